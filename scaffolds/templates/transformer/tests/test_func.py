import asyncio

import httpx

from function import Transformer
from knserve.runtime import Model, create_app


class FakeIris(Model):
    """A real predictor app (knserve.runtime) whose model picks a class from the petal length."""

    def predict(self, payload, headers=None):
        return {"predictions": [0 if row[2] < 2.5 else 2 for row in payload["instances"]]}


def test_transformer_round_trip_through_a_predictor():
    async def run():
        app = create_app(models=[FakeIris("{{name}}")])
        await app.startup(wait=True)
        transformer = Transformer("{{name}}", transport=httpx.ASGITransport(app=app))
        transformer.load()
        rows = transformer.preprocess({"instances": [[51, 35, 14, 2], [65, 30, 52, 20]]})
        predictions = await transformer.predict(rows)
        await app.shutdown()
        return transformer.postprocess(predictions)

    assert asyncio.run(run()) == {"predictions": ["setosa", "virginica"]}
