"""KServe's multi-model config (models.json) in the runtime: TrainedModels loaded at start
before the server is ready, loaded and unloaded later through the repository extension, one bad
model failing alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from net_fixtures import ServerProcess, eventually, free_port
from runtime_fixtures import serving

from knserve.runtime.model_config import ModelConfigError, parse_model_config, read_model_config
from knserve.runtime.server import settings_from_args
from knserve.runtime.settings import ModelSpec, RuntimeSettings


def train_offset_iris(folder: Path, offset: int) -> None:
    """LogisticRegression on iris with the classes renumbered from `offset`: each model says
    which one it is by its answers."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y + offset), folder / "model.joblib")


SETOSA = [5.1, 3.5, 1.4, 0.2]  # class 0


def entry(name: str, uri: str, framework: str = "sklearn") -> dict[str, Any]:
    return {
        "modelName": name,
        "modelSpec": {"storageUri": uri, "framework": framework, "memory": "64Mi"},
    }


def write(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps(list(entries)))


def test_the_config_is_kserves_models_json_and_bad_shapes_say_where() -> None:
    specs = parse_model_config([entry("a", "gs://b/a"), entry("b", "/m/b", "xgboost")])
    assert specs == {
        "a": ModelSpec("a", "gs://b/a", "sklearn"),
        "b": ModelSpec("b", "/m/b", "xgboost"),
    }
    with pytest.raises(ModelConfigError, match="JSON list"):
        parse_model_config({"modelName": "a"})
    with pytest.raises(ModelConfigError, match=r"entry 1 \(b\) has no modelSpec.storageUri"):
        parse_model_config([entry("a", "/x"), {"modelName": "b", "modelSpec": {}}])


def test_an_absent_or_empty_config_lists_no_models(tmp_path: Path) -> None:
    assert read_model_config(tmp_path / "missing.json") == {}
    (tmp_path / "empty.json").write_text("")
    assert read_model_config(tmp_path / "empty.json") == {}


async def test_config_models_load_before_ready_and_one_bad_model_fails_alone(
    tmp_path: Path,
) -> None:
    for i in range(3):
        train_offset_iris(tmp_path / f"m{i}", 10 * i)
    config = tmp_path / "models.json"
    write(
        config,
        *(entry(f"m{i}", str(tmp_path / f"m{i}")) for i in range(3)),
        entry("bad", str(tmp_path / "nowhere")),
    )
    async with serving(RuntimeSettings(model_config=str(config))) as (client, _):
        assert (await client.get("/v2/health/ready")).status_code == 200
        for i in range(3):
            answer = await client.post(f"/v1/models/m{i}:predict", json={"instances": [SETOSA]})
            assert answer.json() == {"predictions": [10 * i]}
        bad = await client.post("/v1/models/bad:predict", json={"instances": [SETOSA]})
        assert bad.status_code == 503
        assert "nowhere" in bad.json()["error"]
        index = {m["name"]: m for m in (await client.post("/v2/repository/index")).json()}
        assert index["bad"]["state"] == "FAILED" and "nowhere" in index["bad"]["reason"]


async def test_a_model_added_to_the_config_loads_through_the_extension_and_unloads(
    tmp_path: Path,
) -> None:
    train_offset_iris(tmp_path / "a", 0)
    train_offset_iris(tmp_path / "b", 50)
    config = tmp_path / "models.json"
    async with serving(RuntimeSettings(model_config=str(config))) as (client, _):
        # a multi-model server holding nothing yet is ready (KServe's agent adds models later)
        assert (await client.get("/v2/health/ready")).status_code == 200
        assert (await client.post("/v2/repository/models/b/load")).status_code == 404
        write(config, entry("a", str(tmp_path / "a")), entry("b", str(tmp_path / "b")))
        assert (await client.post("/v2/repository/models/b/load")).status_code == 200
        answer = await client.post("/v2/models/b/infer", json=v2(SETOSA))
        assert answer.json()["outputs"][0]["data"] == [50]
        # b leaves the config, then is unloaded: gone (404), a unaffected
        write(config, entry("a", str(tmp_path / "a")))
        assert (await client.post("/v2/repository/models/b/unload")).status_code == 200
        assert (await client.get("/v2/models/b")).status_code == 404
        assert (await client.post("/v2/repository/models/a/load")).status_code == 200
        answer = await client.post("/v1/models/a:predict", json={"instances": [SETOSA]})
        assert answer.json() == {"predictions": [0]}
        # a changed storageUri is loaded anew on the next load
        write(config, entry("a", str(tmp_path / "b")))
        assert (await client.post("/v2/repository/models/a/load")).status_code == 200
        answer = await client.post("/v1/models/a:predict", json={"instances": [SETOSA]})
        assert answer.json() == {"predictions": [50]}


def v2(row: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row}]}


def test_a_multi_model_server_takes_an_empty_model_dir_as_kserves_servers_do(
    tmp_path: Path,
) -> None:
    config = str(tmp_path / "models.json")
    empty = tmp_path / "mnt-models"
    empty.mkdir()
    for model_dir in (str(empty), str(tmp_path / "absent")):
        settings = settings_from_args(
            ["--model_name=mms", f"--model_dir={model_dir}", f"--model-config={config}"]
        )
        assert settings.models == () and settings.model_config == config
    # without a model config, a model dir with no model is still the model it names
    settings = settings_from_args(["--model_name=one", f"--model_dir={empty}"])
    assert settings.models == (ModelSpec("one", str(empty)),)


def test_without_model_dir_repository_or_config_the_server_says_what_to_give() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "knserve.runtime", "--model_name=x"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "give --model-name and --model-dir, --model-repository" in result.stderr


def test_a_multi_model_server_listens_only_once_its_models_are_tried(
    tmp_path: Path, spawn: Callable[..., ServerProcess]
) -> None:
    """Knative's default probe (a stock runtime declares none) is a TCP connect: the port must
    not open before the TrainedModels are in, or a new replica would take traffic without them."""
    train_offset_iris(tmp_path / "a", 0)
    config = tmp_path / "models.json"
    write(config, entry("a", str(tmp_path / "a")), entry("bad", str(tmp_path / "nowhere")))
    port = free_port()
    server = spawn(
        [sys.executable, "-m", "knserve.runtime", f"--http_port={port}", f"--model-config={config}"]
    )

    def connects() -> bool:
        assert server.proc.poll() is None, server.log()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    eventually(connects, 60, "the server never listened")
    # the first moment it accepts a connection, it is ready and holds the model
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/v2/health/ready", trust_env=False).status_code == 200
    answer = httpx.post(f"{url}/v1/models/a:predict", json={"instances": [SETOSA]}, trust_env=False)
    assert answer.json() == {"predictions": [0]}
