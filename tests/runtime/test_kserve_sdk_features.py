"""knserve's runtime features on a hosted KServe model file (batching, response cache, metrics),
and the one-line reasons when a file cannot be hosted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from model_fixtures import train_sklearn_iris
from runtime_fixtures import serving

from knserve.runtime.settings import RuntimeSettings

pytest.importorskip("kserve")

from knserve.runtime.kserve_host import (
    KServeFileError,
    load_kserve_models,
)

SDK = Path(__file__).resolve().parent.parent / "support" / "kserve_sdk"


async def test_batching_cache_and_metrics_apply_to_a_kserve_model(tmp_path: Path) -> None:
    model, x = train_sklearn_iris(tmp_path)
    models = load_kserve_models(
        SDK / "custom_model.py", ["--model_name=iris", f"--model_dir={tmp_path}"]
    )
    settings = RuntimeSettings(max_batch_size=8, max_latency_ms=200, cache_entries=32)
    rows = x[40:56]
    async with serving(settings, models) as (client, app):
        answers = await asyncio.gather(
            *(
                client.post("/v1/models/iris:predict", json={"instances": [r]})
                for r in rows.tolist()
            )
        )
        assert [a.json()["predictions"] for a in answers] == [[p] for p in model.predict(rows)]
        batcher = app.repository.get("iris").batcher
        assert batcher is not None
        assert batcher.stats.requests == len(rows)
        assert batcher.stats.batches < len(rows)  # rows from different requests shared a call
        again = await client.post("/v1/models/iris:predict", json={"instances": [rows[0].tolist()]})
        assert again.json() == answers[0].json()
        v2 = {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 4],
                    "datatype": "FP64",
                    "data": rows[:2].ravel().tolist(),
                }
            ]
        }
        first = await client.post("/v2/models/iris/infer", json=v2)
        second = await client.post("/v2/models/iris/infer", json=v2)
        assert first.json()["outputs"] == second.json()["outputs"]
        assert first.json()["outputs"][0]["data"] == model.predict(rows[:2]).tolist()
        metrics = (await client.get("/metrics")).text
    hits = [line for line in metrics.splitlines() if line.startswith("knserve_cache_hits")]
    assert hits and float(hits[0].split()[-1]) >= 2  # the repeated V1 and V2 requests
    assert 'model_name="iris"' in metrics


async def test_sync_and_async_hooks_of_a_kserve_model_both_run(tmp_path: Path) -> None:
    model_file = tmp_path / "model.py"
    model_file.write_text(
        "from kserve import Model, ModelServer, model_server\n"
        "import argparse\n"
        "class Doubler(Model):\n"
        "    def __init__(self, name):\n"
        "        super().__init__(name)\n"
        "        self.ready = True\n"
        "    def preprocess(self, payload, headers=None):\n"
        "        return [2 * v for v in payload['instances']]\n"
        "    async def predict(self, payload, headers=None):\n"
        "        return {'predictions': payload, 'seen': headers.get('x-caller')}\n"
        "args, _ = argparse.ArgumentParser(parents=[model_server.parser]).parse_known_args()\n"
        "if __name__ == '__main__':\n"
        "    ModelServer().start([Doubler(args.model_name)])\n"
    )
    models = load_kserve_models(model_file, ["--model_name=double"])
    async with serving(RuntimeSettings(), models) as (client, _):
        answer = await client.post(
            "/v1/models/double:predict", json={"instances": [1, 2.5]}, headers={"x-caller": "t"}
        )
    assert answer.json() == {"predictions": [2, 5.0], "seen": "t"}


def test_a_file_that_never_starts_a_server_is_refused_with_the_reason(tmp_path: Path) -> None:
    model_file = tmp_path / "model.py"
    model_file.write_text("from kserve import Model\nx = 1\n")
    with pytest.raises(KServeFileError, match=r"ended without calling kserve.ModelServer\(\)"):
        load_kserve_models(model_file, [])


def test_a_model_that_is_not_ready_is_refused_as_kserve_refuses_it(tmp_path: Path) -> None:
    model_file = tmp_path / "model.py"
    model_file.write_text(
        "from kserve import Model, ModelServer\n"
        "class Lazy(Model):\n"
        "    def __init__(self):\n"
        "        super().__init__('lazy')\n"
        "ModelServer().start([Lazy()])\n"
    )
    with pytest.raises(KServeFileError, match="no model of .* is ready"):
        load_kserve_models(model_file, [])


@pytest.mark.slow
def test_the_command_exits_1_with_one_line_when_the_file_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    result = subprocess.run(
        [sys.executable, "-m", "knserve.runtime", "--kserve-model", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"knserve.runtime: the KServe model file {missing} does not exist"
    )
