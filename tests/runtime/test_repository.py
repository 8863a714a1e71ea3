"""Several models per server, the V2 repository extension, custom models, and load failures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from model_fixtures import train_lightgbm, train_sklearn_iris
from runtime_fixtures import serving

from knserve.runtime.app import create_app
from knserve.runtime.settings import RuntimeSettings

CUSTOM = """
from knserve.runtime import Model

class Scaler(Model):
    def load(self):
        self.factor = 3
        self.ready = True
        return True

    def preprocess(self, payload, headers=None):
        return [[v * self.factor for v in row] for row in payload["instances"]]

    async def predict(self, rows, headers=None):
        return [sum(row) for row in rows]

    def postprocess(self, result, headers=None):
        return {"predictions": result, "model": self.name}
"""


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    train_sklearn_iris(tmp_path / "iris")
    train_lightgbm(tmp_path / "gbm")
    (tmp_path / "scaler").mkdir()
    (tmp_path / "scaler" / "model.py").write_text(CUSTOM)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.joblib").write_bytes(b"not a model")
    return tmp_path


async def test_each_sub_folder_is_a_model_and_a_broken_one_does_not_stop_the_others(
    repository: Path,
) -> None:
    async with serving(RuntimeSettings(model_repository=str(repository))) as (client, _):
        index = {m["name"]: m for m in (await client.post("/v2/repository/index")).json()}
        assert {n: m["state"] for n, m in index.items()} == {
            "broken": "FAILED",
            "gbm": "READY",
            "iris": "READY",
            "scaler": "READY",
        }
        assert "model.joblib" in index["broken"]["reason"]
        broken = await client.post("/v1/models/broken:predict", json={"instances": [[1, 2, 3, 4]]})
        assert broken.status_code == 503
        assert (
            "failed to load" in broken.json()["error"] and "model.joblib" in broken.json()["error"]
        )
        assert (await client.get("/v2/health/ready")).status_code == 503  # not every model is ready
        ok = await client.post(
            "/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}
        )
        assert ok.json() == {"predictions": [1]}


async def test_a_custom_model_runs_its_hooks_sync_and_async(repository: Path) -> None:
    async with serving(RuntimeSettings(model_repository=str(repository))) as (client, _):
        response = await client.post(
            "/v1/models/scaler:predict", json={"instances": [[1, 2], [3, 4]]}
        )
        assert response.json() == {"predictions": [9, 21], "model": "scaler"}


async def test_unload_and_load_through_the_repository_extension(repository: Path) -> None:
    async with serving(RuntimeSettings(model_repository=str(repository))) as (client, _):
        assert (await client.post("/v2/repository/models/iris/unload")).status_code == 200
        gone = await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
        assert gone.status_code == 503 and "not loaded" in gone.json()["error"]
        assert (await client.get("/v2/models/iris/ready")).status_code == 503
        assert (await client.post("/v2/repository/models/iris/load")).status_code == 200
        back = await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
        assert back.status_code == 200
        failed = await client.post("/v2/repository/models/broken/load")
        assert failed.status_code == 503
        unknown = await client.post("/v2/repository/models/nope/load")
        assert unknown.status_code == 404


async def test_a_model_folder_added_later_can_be_loaded_by_name(repository: Path) -> None:
    async with serving(RuntimeSettings(model_repository=str(repository))) as (client, _):
        train_sklearn_iris(repository / "late")
        assert (await client.post("/v2/repository/models/late/load")).status_code == 200
        ok = await client.post(
            "/v1/models/late:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}
        )
        assert ok.json() == {"predictions": [1]}


async def test_a_model_py_that_does_not_import_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.py").write_text("import not_a_module_anywhere\n")
    async with serving(RuntimeSettings(model_repository=str(tmp_path))) as (client, _):
        (entry,) = (await client.post("/v2/repository/index")).json()
        assert entry["state"] == "FAILED"
        assert "importing" in entry["reason"] and "not_a_module_anywhere" in entry["reason"]


# KServe's custom model shape without knserve's base class: KServe calls the methods by name.
DUCK_TYPED = """
class Doubler:
    def __init__(self, name):
        self.name = name
        self.ready = False
        self.version = "7"

    def load(self):
        self.factor = 2
        self.ready = True

    def preprocess(self, payload, headers=None):
        return payload["instances"]

    async def predict(self, rows, headers=None):
        return {"predictions": [self.factor * x for x in rows], "name": self.name}
"""
NOT_A_MODEL = """
class Helper:
    def load(self):
        pass
"""


def serve_custom(spawn: Any, folder: Path, source: str, port: int) -> Any:
    folder.mkdir()
    (folder / "model.py").write_text(source)
    return spawn(
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model_name",
            "dbl",
            "--model_dir",
            str(folder),
            "--model_format",
            "custom",
            "--http_port",
            str(port),
        ]
    )


@pytest.mark.slow
def test_a_custom_model_class_without_knserves_base_class_loads_and_serves(
    tmp_path: Path, spawn: Any, port: int
) -> None:
    proc = serve_custom(spawn, tmp_path / "duck", DUCK_TYPED, port)
    ready = proc.wait_http(f"http://127.0.0.1:{port}/v2/models/dbl/ready")
    assert ready.json() == {"name": "dbl", "ready": True}
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/dbl:predict", json={"instances": [1, 2]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [2, 4], "name": "dbl"}
    meta = httpx.get(f"http://127.0.0.1:{port}/v2/models/dbl").json()
    assert meta["versions"] == ["7"]
    explain = httpx.post(f"http://127.0.0.1:{port}/v1/models/dbl:explain", json={"instances": [1]})
    assert explain.status_code == 501  # it has no explain(): refused with the reason, not a crash
    assert "has no explainer" in explain.json()["error"]


@pytest.mark.slow
def test_a_class_that_is_no_model_is_refused_at_start_with_the_reason(
    tmp_path: Path, spawn: Any, port: int
) -> None:
    proc = serve_custom(spawn, tmp_path / "helper", NOT_A_MODEL, port)
    assert proc.proc.wait(60) == 1, proc.log()
    last = proc.log().rstrip().splitlines()[-1]
    assert last.startswith("knserve.runtime: model dbl failed to load: ")
    assert "must define exactly one model class" in last and "found: none" in last


async def test_the_python_api_takes_a_duck_typed_model_and_refuses_what_is_none() -> None:
    class Echo:
        name = "echo"
        ready = False

        def load(self) -> bool:
            return True

        def predict(self, payload: Any, headers: Any = None) -> Any:
            return payload["instances"]

    async with serving(RuntimeSettings(), [Echo()]) as (client, _):  # type: ignore[list-item]
        answer = await client.post("/v1/models/echo:predict", json={"instances": ["a", "b"]})
        assert answer.json() == {"predictions": ["a", "b"]}
    del Echo.predict
    with pytest.raises(TypeError, match=r"Echo is not a model: it has no predict\(\)"):
        create_app(RuntimeSettings(), [Echo()])  # type: ignore[list-item]
