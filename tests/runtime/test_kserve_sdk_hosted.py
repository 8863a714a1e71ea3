"""KServe's documented custom model and transformer files, unedited, hosted by knserve's runtime
(`python -m knserve.runtime --kserve-model FILE …`) and, in the same test, served by KServe's own
`ModelServer` (the installed kserve 0.21): answers equal to the model's own and to KServe's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_fixtures import train_sklearn_iris
from net_fixtures import ServerProcess, free_port

pytest.importorskip("kserve")

SDK = Path(__file__).resolve().parent.parent / "support" / "kserve_sdk"
MODEL_FILE = SDK / "custom_model.py"
TRANSFORMER_FILE = SDK / "custom_transformer.py"
LOOPBACK = SDK / "kserve_loopback.py"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]
ROWS = slice(45, 60)  # setosa and versicolor rows


class Servers:
    """The processes one module starts, each on a free loopback port; all stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[ServerProcess] = []

    def start(self, argv: list[str], kserve: bool, name: str = "iris") -> str:
        port = free_port()
        flags = [f"--model_name={name}", f"--http_port={port}", "--enable_grpc=false"]
        if kserve:  # KServe's own server, bound to loopback
            cmd = [sys.executable, str(LOOPBACK), argv[0], *flags, *argv[1:]]
        else:
            cmd = [sys.executable, "-m", "knserve.runtime", "--kserve-model", *argv[:1]]
            cmd += [*flags, *argv[1:]]
        process = ServerProcess(cmd, self.logs / f"server-{len(self.started)}.log")
        self.started.append(process)
        base = f"http://127.0.0.1:{port}"
        process.wait_http(f"{base}/v1/models/{name}", timeout=90)
        return base


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, np.ndarray]:
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("logs"))
    yield started
    for process in reversed(started.started):
        process.stop()


@pytest.fixture(scope="module")
def predictors(servers: Servers, iris) -> dict[str, str]:  # type: ignore[no-untyped-def]
    folder = iris[0]
    argv = [str(MODEL_FILE), f"--model_dir={folder}"]
    return {
        "knserve": servers.start(argv, kserve=False),
        "kserve": servers.start(argv, kserve=True),
    }


def v2_body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(x.shape),
                "datatype": "FP64",
                "data": x.ravel().tolist(),
            }
        ]
    }


@pytest.mark.slow
def test_the_custom_model_answers_v1_and_v2_as_the_model_and_as_kserves_server(
    predictors: dict[str, str], iris
) -> None:  # type: ignore[no-untyped-def]
    _, model, x = iris
    rows = x[ROWS]
    expected = model.predict(rows).tolist()
    answers = {}
    for server, base in predictors.items():
        v1 = httpx.post(f"{base}/v1/models/iris:predict", json={"instances": rows.tolist()})
        assert v1.status_code == 200, (server, v1.text)
        assert v1.json() == {"predictions": expected}, server
        # the model's own response header (return_response_headers=True) reaches the client
        assert float(v1.headers["prediction-time-latency"]) >= 0, server
        v2 = httpx.post(f"{base}/v2/models/iris/infer", json=v2_body(rows))
        assert v2.status_code == 200, (server, v2.text)
        body = v2.json()
        assert body["outputs"][0]["data"] == expected, server
        body.pop("id")  # a fresh uuid per answer (the model's generate_uuid())
        answers[server] = (v1.json(), body)
    assert answers["knserve"] == answers["kserve"]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_transformer_forwards_to_the_predictor_as_kserves_server_does(
    servers: Servers, predictors: dict[str, str], iris, protocol: str
) -> None:  # type: ignore[no-untyped-def]
    _, model, x = iris
    rows = x[ROWS]
    predictor_host = predictors["knserve"].removeprefix("http://")
    argv = [
        str(TRANSFORMER_FILE),
        f"--predictor_host={predictor_host}",
        f"--predictor_protocol={protocol}",
    ]
    named = [dict(zip(FEATURES, r, strict=True)) for r in rows.tolist()]
    species = [SPECIES[c] for c in model.predict(rows)]
    answers = {}
    for server in ("knserve", "kserve"):
        base = servers.start(argv, kserve=server == "kserve")
        headers = {"x-request-id": f"req-{server}-{protocol}"}
        v1 = httpx.post(
            f"{base}/v1/models/iris:predict", json={"instances": named}, headers=headers
        )
        assert v1.status_code == 200, (server, v1.text)
        assert v1.json() == {"predictions": species}, server
        # the predictor's response headers come back through the transformer (KServe's
        # return_response_headers), so the client sees the predictor's latency header
        assert "prediction-time-latency" in v1.headers, (server, dict(v1.headers))
        answers[server] = [v1.json()]
        if protocol == "v2":  # KServe's example answers V2 clients only through a V2 predictor
            v2 = httpx.post(f"{base}/v2/models/iris/infer", json=v2_body(rows))
            assert v2.status_code == 200, (server, v2.text)
            body = v2.json()
            assert body["outputs"][0]["data"] == model.predict(rows).tolist(), server
            body.pop("id")
            answers[server].append(body)
    assert answers["knserve"] == answers["kserve"]


@pytest.mark.slow
def test_a_transformer_whose_predictor_is_down_answers_502_naming_it(
    servers: Servers, iris
) -> None:  # type: ignore[no-untyped-def]
    gone = f"127.0.0.1:{free_port()}"
    base = servers.start(
        [str(TRANSFORMER_FILE), f"--predictor_host={gone}", "--predictor_protocol=v1"],
        kserve=False,
    )
    named = [dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))]
    response = httpx.post(f"{base}/v1/models/iris:predict", json={"instances": named})
    assert response.status_code == 502
    assert gone in response.json()["error"]
