"""Several models per server, the V2 repository extension, custom models, and load failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_fixtures import train_lightgbm, train_sklearn_iris
from runtime_fixtures import serving

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
            "broken": "FAILED", "gbm": "READY", "iris": "READY", "scaler": "READY",
        }  # fmt: skip
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
