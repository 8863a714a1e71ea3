"""s3:// model URIs against a real S3 server process (moto's, IAM checks on) on loopback, read
through boto3 as KServe's storage initializer reads them, with KServe's environment names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from model_fixtures import train_sklearn_iris
from net_fixtures import model_server
from storage_fixtures import S3Server, tar_gz

from knserve.runtime.formats import detect_format
from knserve.runtime.storage import StorageError, resolve_model_uri

pytestmark = pytest.mark.usefixtures("aws_isolated")


@pytest.fixture(scope="module")
def iris(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, bytes]:
    """The buckets `models` and `secret`, filled through boto3 with a freshly trained model."""
    folder = tmp_path_factory.mktemp("iris")
    model, _ = train_sklearn_iris(folder)
    data = (folder / "model.joblib").read_bytes()
    s3 = s3_server.client()
    for bucket in ("models", "secret"):
        s3.create_bucket(Bucket=bucket)
    for key, body in {
        "iris/model.joblib": data,
        "iris/extra/notes.txt": b"trained in the test",
        "iris/": b"",  # a folder marker, as consoles make them
        "iris-old/model.joblib": b"a sibling that shares the prefix but not the folder",
        "archives/iris.tar.gz": tar_gz({"iris/model.joblib": data}),
    }.items():
        s3.put_object(Bucket="models", Key=key, Body=body)
    s3.put_object(Bucket="secret", Key="iris/model.joblib", Body=data)
    return model, data


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_model_folder_is_fetched_with_kserves_environment_names(
    tmp_path: Path, s3_server: S3Server, iris: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, s3_server.env("reader"))
    folder = resolve_model_uri("s3://models/iris", cache_dir=tmp_path)
    assert files_under(folder) == {"model.joblib", "extra/notes.txt"}  # not iris-old/
    assert (folder / "model.joblib").read_bytes() == iris[1]
    assert detect_format(folder) == "sklearn"
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [folder.name]


def test_s3_endpoint_and_s3_use_https_as_kserves_secret_annotations_set_them(
    tmp_path: Path, s3_server: S3Server, iris: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3_server.env("reader")
    monkeypatch.setenv("S3_ENDPOINT", env.pop("AWS_ENDPOINT_URL").removeprefix("http://"))
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    use_env(monkeypatch, env)
    folder = resolve_model_uri("s3://models/iris/model.joblib", cache_dir=tmp_path)
    assert files_under(folder) == {"model.joblib"}  # one object, under its own name


def test_a_single_archive_object_is_unpacked(
    tmp_path: Path, s3_server: S3Server, iris: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, s3_server.env("reader"))
    folder = resolve_model_uri("s3://models/archives/iris.tar.gz", cache_dir=tmp_path)
    assert files_under(folder) == {"model.joblib"}
    assert (folder / "model.joblib").read_bytes() == iris[1]


def test_a_fetched_uri_is_served_from_the_cache_afterwards(
    tmp_path: Path, s3_server: S3Server, iris: tuple[Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, s3_server.env("admin"))
    s3_server.client().put_object(Bucket="models", Key="once/model.joblib", Body=iris[1])
    folder = resolve_model_uri("s3://models/once", cache_dir=tmp_path)
    s3_server.client().delete_object(Bucket="models", Key="once/model.joblib")
    assert resolve_model_uri("s3://models/once", cache_dir=tmp_path) == folder
    assert (folder / "model.joblib").read_bytes() == iris[1]


@pytest.mark.parametrize(
    ("uri", "credentials", "message"),
    [
        (
            "s3://nobucket/iris",
            "reader",
            r"cannot fetch s3://nobucket/iris from S3: bucket 'nobucket' does not exist at "
            r"http://127\.0\.0\.1:\d+; check the bucket in storageUri; check the endpoint",
        ),
        (
            "s3://secret/iris",
            "reader",
            r"cannot fetch s3://secret/iris from S3: access denied to bucket 'secret' "
            r"\(AccessDenied: Access Denied\); grant s3:ListBucket and s3:GetObject on it, or set "
            r"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
        (
            "s3://models/iris",
            ("NOSUCHKEY", "x"),
            r"access key 'NOSUCHKEY' is not known at http://127\.0\.0\.1:\d+ "
            r"\(InvalidAccessKeyId\); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ),
        (
            "s3://models/iris",
            "wrong secret",
            r"the secret key does not match the access key \(SignatureDoesNotMatch\); "
            r"check AWS_SECRET_ACCESS_KEY",
        ),
        (
            "s3://models/iris/nothing",
            "reader",
            r"cannot fetch s3://models/iris/nothing from S3: no object 'iris/nothing' and nothing "
            r"under 'iris/nothing/' in bucket 'models'; check the path in storageUri",
        ),
    ],
)
def test_failures_say_what_to_fix_on_one_line_and_cache_nothing(
    tmp_path: Path,
    s3_server: S3Server,
    iris: tuple[Any, bytes],
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
    credentials: str | tuple[str, str],
    message: str,
) -> None:
    env = s3_server.env("reader")
    if credentials == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif isinstance(credentials, tuple):
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = credentials
    use_env(monkeypatch, env)
    with pytest.raises(StorageError, match=message) as caught:
        resolve_model_uri(uri, cache_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_an_unreachable_endpoint_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from net_fixtures import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(
        StorageError,
        match=r"EndpointConnectionError: .*; check the endpoint in "
        r"AWS_ENDPOINT_URL \(or S3_ENDPOINT and S3_USE_HTTPS\)",
    ):
        resolve_model_uri("s3://models/iris", cache_dir=tmp_path)


def test_without_boto3_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from knserve.runtime.storage import resolve_model_uri, StorageError\n"
        "from pathlib import Path\n"
        "try: resolve_model_uri('s3://b/m', cache_dir=Path(sys.argv[1]))\n"
        "except StorageError as e: print(e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.startswith("cannot fetch s3://b/m from S3: the client library is not installed")
    assert out.rstrip().endswith("install it with: pip install 'knserve[s3]'")


@pytest.mark.slow
def test_the_runtime_serves_a_model_from_s3_end_to_end(
    tmp_path: Path,
    s3_server: S3Server,
    iris: tuple[Any, bytes],
    spawn,
    port: int,  # type: ignore[no-untyped-def]
) -> None:
    model = iris[0]
    env = {**s3_server.env("reader"), "KNSERVE_MODEL_CACHE": str(tmp_path / "cache")}
    proc = model_server(spawn, "m", "s3://models/iris", port, env)
    proc.wait_http(f"http://127.0.0.1:{port}/v2/models/m/ready", timeout=90)
    rows = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/m:predict", json={"instances": rows})
    assert response.json() == {"predictions": model.predict(rows).tolist()}


@pytest.mark.slow
def test_a_missing_bucket_ends_the_runtime_with_the_reason_as_its_last_line(
    tmp_path: Path,
    s3_server: S3Server,
    spawn,
    port: int,  # type: ignore[no-untyped-def]
) -> None:
    env = {**s3_server.env("reader"), "KNSERVE_MODEL_CACHE": str(tmp_path / "cache")}
    proc = model_server(spawn, "m", "s3://nobucket/iris", port, env)
    assert proc.proc.wait(90) == 1, proc.log()
    last = proc.log().rstrip().splitlines()[-1]
    assert last.startswith(
        "knserve.runtime: model m failed to load: cannot fetch "
        "s3://nobucket/iris from S3: bucket 'nobucket' does not exist"
    )
