"""A plane for the model storage tests (tests/knative/test_storage_*plane*.py): one per module,
its environment pointing Google's client at the GCS emulator (`STORAGE_EMULATOR_HOST`, as a user
would) and holding moto's reader keys, `--pvc models=…` mapping a claim folder; the stores hold
the iris model trained here (`stores`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_fixtures import train_sklearn_iris
from net_fixtures import ServerProcess
from plane_fixtures import LocalPlane
from storage_fixtures import S3Server

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, bytes]:
    folder = tmp_path_factory.mktemp("iris")
    model, _ = train_sklearn_iris(folder)
    return model, (folder / "model.joblib").read_bytes()


@pytest.fixture(scope="module")
def stores(
    gcs_emulator: str,
    s3_server: S3Server,
    iris: tuple[Any, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """KServe's quick-start bucket on the emulator, the bucket `models` (and the denied `secret`)
    on moto, and a claim folder, each holding the iris model."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    data = iris[1]
    gcs = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs_emulator),
    )
    gcs.create_bucket("kfserving-examples").blob(
        "models/sklearn/1.0/model/model.joblib"
    ).upload_from_string(data)
    s3 = s3_server.client("admin")
    for bucket in ("models", "secret"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="iris/model.joblib", Body=data)
    s3.put_object(Bucket="models", Key="not-sklearn/model.joblib", Body=b"not a joblib file")
    claim = tmp_path_factory.mktemp("claim")
    (claim / "iris").mkdir()
    (claim / "iris" / "model.joblib").write_bytes(data)
    return {"gcs": gcs_emulator, "s3": s3_server, "claim": claim}


@pytest.fixture(scope="module")
def storage_plane(
    stores: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlane]:
    root = tmp_path_factory.mktemp("storage-plane")
    s3: S3Server = stores["s3"]
    key_id, secret = s3.keys["reader"]
    env = {
        "STORAGE_EMULATOR_HOST": stores["gcs"],
        "KNSERVE_MODEL_CACHE": str(root / "cache"),
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    started: list[ServerProcess] = []

    def spawn(args: list[str]) -> ServerProcess:
        started.append(ServerProcess(args, root / f"plane-{len(started)}.log", env=env))
        return started[-1]

    plane = LocalPlane(spawn, root / "data", ["--pvc", f"models={stores['claim']}"])
    try:
        yield plane
    finally:
        plane.close()
        for process in started:
            process.stop()


def isvc(name: str, uri: str, fmt: str = "sklearn", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"predictor": {"model": {"modelFormat": {"name": fmt}, "storageUri": uri}}},
    }


def apply(plane: LocalPlane, tmp_path: Path, obj: dict[str, Any], *flags: str) -> str:
    path = tmp_path / f"{obj['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(obj))
    result = plane.knserve("isvc", "apply", "-f", str(path), *flags, timeout=300)
    assert result.returncode == 0, result.stderr + plane.log()
    return result.stderr


def answers_as_the_model(plane: LocalPlane, name: str, model: Any) -> None:
    response = plane.call(
        f"{name}.default.localhost", f"/v1/models/{name}:predict", "POST", json={"instances": ROWS}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": model.predict(ROWS).tolist()}


def delete(plane: LocalPlane, name: str) -> None:
    assert plane.knserve("isvc", "delete", name).returncode == 0
