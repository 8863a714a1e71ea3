"""gs:// model URIs against gcp-storage-emulator on loopback, reached through google-cloud-storage
by `STORAGE_EMULATOR_HOST` as Google's clients read it (anonymously, as a public bucket is)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import train_sklearn_iris
from storage_fixtures import tar_gz

from knserve.runtime.formats import detect_format
from knserve.runtime.storage import StorageError, resolve_model_uri


@pytest.fixture(scope="module")
def iris(gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, bytes]:
    """The bucket `models` on the emulator, filled through google-cloud-storage."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    folder = tmp_path_factory.mktemp("iris")
    model, _ = train_sklearn_iris(folder)
    data = (folder / "model.joblib").read_bytes()
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs_emulator),
    )
    bucket = client.create_bucket("models")
    for name, body in {
        "iris/model.joblib": data,
        "iris/extra/notes.txt": b"trained in the test",
        "iris-old/model.joblib": b"a sibling that shares the prefix but not the folder",
        "archives/iris.tar.gz": tar_gz({"iris/model.joblib": data}),
    }.items():
        bucket.blob(name).upload_from_string(body)
    return model, data


@pytest.fixture
def emulated(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "API_ENDPOINT_OVERRIDE", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    yield


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.usefixtures("emulated")
def test_a_model_folder_is_fetched_anonymously_through_the_emulator(
    tmp_path: Path, iris: tuple[Any, bytes]
) -> None:
    folder = resolve_model_uri("gs://models/iris", cache_dir=tmp_path)
    assert files_under(folder) == {"model.joblib", "extra/notes.txt"}  # not iris-old/
    assert (folder / "model.joblib").read_bytes() == iris[1]
    assert detect_format(folder) == "sklearn"


@pytest.mark.usefixtures("emulated")
@pytest.mark.parametrize(
    "uri", ["gs://models/iris/model.joblib", "gs://models/archives/iris.tar.gz"]
)
def test_a_single_object_is_kept_or_unpacked(
    tmp_path: Path, iris: tuple[Any, bytes], uri: str
) -> None:
    folder = resolve_model_uri(uri, cache_dir=tmp_path)
    assert files_under(folder) == {"model.joblib"}
    assert (folder / "model.joblib").read_bytes() == iris[1]


@pytest.mark.usefixtures("emulated")
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "gs://nobucket/iris",
            r"cannot fetch gs://nobucket/iris from Google Cloud Storage: bucket 'nobucket' does not "
            r"exist at http://127\.0\.0\.1:\d+; check the bucket in storageUri",
        ),
        (
            "gs://models/nothing",
            r"cannot fetch gs://models/nothing from Google Cloud Storage: no object 'nothing' and "
            r"nothing under 'nothing/' in bucket 'models'; check the path in storageUri",
        ),
    ],
)
def test_failures_say_what_to_fix(
    tmp_path: Path, iris: tuple[Any, bytes], uri: str, message: str
) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        resolve_model_uri(uri, cache_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []


@pytest.mark.usefixtures("emulated")
def test_a_key_file_that_is_not_there_is_reported_not_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    with pytest.raises(
        StorageError,
        match=r"GOOGLE_APPLICATION_CREDENTIALS names .*/key\.json, "
        r"which is not a file; set GOOGLE_APPLICATION_CREDENTIALS to a service "
        r"account key file",
    ):
        resolve_model_uri("gs://models/iris", cache_dir=tmp_path / "cache")


@pytest.mark.usefixtures("emulated")
def test_a_key_file_that_does_not_load_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key.json").write_text('{"type": "service_account"}')
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")  # with an emulator the client never loads it
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match=r"the key file .*/key\.json does not load \("):
        resolve_model_uri("gs://models/iris", cache_dir=tmp_path / "cache")


@pytest.mark.usefixtures("emulated")
def test_progress_is_counted_within_one_large_blob(
    gcs_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from knserve.runtime.storage import cache

    data = random.Random(0).randbytes(3 << 20)
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs_emulator),
    )
    client.create_bucket("large").blob("model/weights.bin").upload_from_string(data)
    seen: list[tuple[int, int | None]] = []
    monkeypatch.setattr(cache, "progress_listeners", [lambda uri, n, t: seen.append((n, t))])
    folder = resolve_model_uri("gs://large/model", cache_dir=tmp_path)
    assert (folder / "weights.bin").read_bytes() == data
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert any(0 < n < len(data) for n, _ in seen)  # not only once the blob is whole
