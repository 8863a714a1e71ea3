"""`knserve export` and `knserve isvc`, through click's CliRunner.

The isvc commands talk to the real control API, served by uvicorn on a loopback port from a
thread of this process, over the real `Client`; the controller reconciles between commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from net_fixtures import serve_in_thread

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.cli.export import cli as export_cli
from knserve.knative.cli.isvc import cli as isvc_cli
from knserve.knative.kserve.controller import InferenceServiceController

# KServe's own examples (docs/samples/v1beta1/sklearn, transformer/torchserve_image_transformer).
SKLEARN_IRIS = """\
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    model:
      modelFormat:
        name: sklearn
      storageUri: "gs://kfserving-examples/models/sklearn/1.0/model"
"""
TRANSFORMER = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: torch-transformer
spec:
  predictor:
    model:
      modelFormat:
        name: pytorch
      storageUri: gs://kfserving-examples/models/torchserve/image_classifier/v1
  transformer:
    containers:
      - image: kserve/image-transformer:latest
        name: kserve-container
        command: ["python", "-m", "model"]
        args: ["--model_name", "mnist"]
"""
RUNTIME = """\
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: my-sklearn
spec:
  supportedModelFormats: [{name: sklearn, autoSelect: true, priority: 5}]
  containers: [{name: kserve-container, image: me/sklearn:1, args: ["--model_name={{.Name}}"]}]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "isvc.yaml"
    path.write_text(text)
    return str(path)


def export(*args: str) -> Any:
    return CliRunner().invoke(export_cli, list(args))


def test_export_prints_the_knative_service_of_sklearn_iris(tmp_path: Path) -> None:
    result = export("-f", write(tmp_path, SKLEARN_IRIS))
    assert result.exit_code == 0, result.output
    (ksvc,) = yaml.safe_load_all(result.output)
    assert (ksvc["apiVersion"], ksvc["kind"]) == ("serving.knative.dev/v1", "Service")
    assert ksvc["metadata"]["name"] == "sklearn-iris-predictor"
    assert ksvc["metadata"]["namespace"] == "default"
    assert "ownerReferences" not in ksvc["metadata"]  # no uid yet: a cluster would refuse it
    template = ksvc["spec"]["template"]
    assert (
        template["metadata"]["annotations"][
            "internal.serving.kserve.io/storage-initializer-sourceuri"
        ]
        == "gs://kfserving-examples/models/sklearn/1.0/model"
    )
    assert "--model_dir=/mnt/models" in template["spec"]["containers"][0]["args"]


def test_export_for_kube_gives_cluster_local_predictor_hosts(tmp_path: Path) -> None:
    result = export("-f", write(tmp_path, TRANSFORMER), "--target", "kube", "-n", "ml")
    assert result.exit_code == 0, result.output
    predictor, transformer = yaml.safe_load_all(result.output)
    assert predictor["metadata"]["name"] == "torch-transformer-predictor"
    args = transformer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "--model_name",
        "mnist",
        "--predictor_host",
        "torch-transformer-predictor.ml",
        "--http_port",
        "8080",
    ]
    local = export("-f", write(tmp_path, TRANSFORMER), "-o", "json")
    items = json.loads(local.output)["items"]
    assert "--predictor_host" in items[1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "torch-transformer-predictor.default.localhost"
        in (items[1]["spec"]["template"]["spec"]["containers"][0]["args"])
    )


def test_export_uses_servingruntimes_of_the_same_file(tmp_path: Path) -> None:
    result = export("-f", write(tmp_path, RUNTIME + "---\n" + SKLEARN_IRIS))
    assert result.exit_code == 0, result.output
    (ksvc,) = yaml.safe_load_all(result.output)
    assert ksvc["spec"]["template"]["spec"]["containers"][0]["image"] == "me/sklearn:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            SKLEARN_IRIS.replace("sklearn\n", "cobol\n"),
            "no runtime found to support model format 'cobol'",
            id="no-runtime",
        ),
        pytest.param(
            RUNTIME,
            "no InferenceService or InferenceGraph in the file (found: ServingRuntime/my-sklearn)",
            id="no-isvc",
        ),
        pytest.param("a: [", "is not valid YAML", id="bad-yaml"),
    ],
)
def test_export_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    result = export("-f", write(tmp_path, text))
    assert result.exit_code == 1
    assert message in result.output


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store behind the control API on a loopback port; `$KNSERVE_API` points the CLI at it."""
    store = Store(tmp_path / "state.db")
    with serve_in_thread(create_app(store)) as url:
        monkeypatch.setenv("KNSERVE_API", url)
        yield store
    store.close()


def knserve(*args: str) -> Any:
    return CliRunner().invoke(isvc_cli, list(args))


def settle(store: Store, name: str) -> None:
    """Reconcile, then play the Serving controller: the predictor's first revision is ready."""
    controller = InferenceServiceController(store)
    asyncio.run(controller.reconcile("default", name))
    ksvc = store.get(by_name("ksvc"), "default", f"{name}-predictor")
    revision = f"{name}-predictor-00001"
    url = f"http://{name}-predictor.default.localhost"
    ksvc["status"] = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "url": url,
        "latestCreatedRevisionName": revision,
        "latestReadyRevisionName": revision,
        "traffic": [
            {
                "revisionName": revision,
                "percent": 100,
                "latestRevision": True,
                "tag": "latest",
                "url": f"http://latest-{name}-predictor.default.localhost",
            }
        ],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    store.replace(by_name("ksvc"), ksvc, subresource="status")
    asyncio.run(controller.reconcile("default", name))


def test_isvc_create_from_a_file_then_list_describe_and_delete(
    plane: Store, tmp_path: Path
) -> None:
    created = knserve("create", "-f", write(tmp_path, SKLEARN_IRIS), "--no-wait")
    assert created.exit_code == 0, created.output
    assert "inferenceservices.serving.kserve.io/sklearn-iris created" in created.output
    settle(plane, "sklearn-iris")

    listed = knserve("list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split()[:5] == ["NAME", "URL", "READY", "PREV", "LATEST"]
    assert row.split()[:5] == [
        "sklearn-iris",
        "http://sklearn-iris.default.localhost",
        "True",
        "100",
        "sklearn-iris-predictor-00001",
    ]

    described = knserve("describe", "sklearn-iris")
    assert described.exit_code == 0, described.output
    out = described.output
    assert "URL:        http://sklearn-iris.default.localhost" in out
    assert "Rolled out:     sklearn-iris-predictor-00001" in out
    assert " 100%  sklearn-iris-predictor-00001 (latest) [latest]" in out
    assert "http://latest-sklearn-iris-predictor.default.localhost" in out
    assert "PredictorReady" in out and "IngressReady" in out

    as_json = json.loads(knserve("describe", "sklearn-iris", "-o", "json").output)
    assert as_json["status"]["components"]["predictor"]["latestRolledoutRevision"]

    deleted = knserve("delete", "sklearn-iris")
    assert deleted.exit_code == 0, deleted.output
    assert plane.list(by_name("ksvc"), "default") == []
    missing = knserve("describe", "sklearn-iris")
    assert missing.exit_code == 1 and '"sklearn-iris" not found' in missing.output


def test_isvc_describe_shows_why_the_model_failed_to_load(plane: Store, tmp_path: Path) -> None:
    created = knserve("create", "-f", write(tmp_path, SKLEARN_IRIS), "--no-wait")
    assert created.exit_code == 0, created.output
    controller = InferenceServiceController(plane)
    asyncio.run(controller.reconcile("default", "sklearn-iris"))
    # the Serving controller's contract for a crashed replica, on the Revision and the Service
    revision = "sklearn-iris-predictor-00001"
    ksvc = plane.get(by_name("ksvc"), "default", "sklearn-iris-predictor")
    plane.create(
        by_name("revisions"),
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": revision, "namespace": "default"},
            "spec": ksvc["spec"]["template"]["spec"],
        },
        validate=False,
    )
    rev = plane.get(by_name("revisions"), "default", revision)
    why = "model sklearn-iris failed to load: /mnt/models/model.joblib is not a model: EOFError"
    crashed = {
        "type": "ContainerHealthy",
        "status": "False",
        "reason": "ExitCode1",
        "message": f"Container failed with: {why}",
    }
    rev["status"] = {"conditions": [{**crashed, "type": "Ready"}, crashed]}
    plane.replace(by_name("revisions"), rev, subresource="status")
    failed = {
        "status": "False",
        "reason": "RevisionFailed",
        "message": f"Revision {revision!r} failed with message: Container failed with: {why}.",
    }
    ksvc["status"] = {
        "observedGeneration": 1,
        "latestCreatedRevisionName": revision,
        "conditions": [{"type": "Ready", **failed}, {"type": "ConfigurationsReady", **failed}],
    }
    plane.replace(by_name("ksvc"), ksvc, subresource="status")
    asyncio.run(controller.reconcile("default", "sklearn-iris"))

    described = knserve("describe", "sklearn-iris")
    assert described.exit_code == 0, described.output
    model = described.output.split("Model:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert model[0].split() == ["State:", "FailedToLoad", "(serving:", "Pending)"]
    assert model[1].split() == ["Transition:", "BlockedByFailedLoad"]
    assert (
        model[2].strip().startswith(f"Last failure:   ModelLoadFailed, exit code 1, in {revision}")
    )
    assert model[3].strip() == why


def test_isvc_create_from_flags_applies_a_canary_on_the_second_run(plane: Store) -> None:
    first = knserve(
        "create",
        "iris",
        "--model-format",
        "sklearn",
        "--storage-uri",
        "file:///v1",
        "--min-replicas",
        "0",
        "--no-wait",
    )
    assert first.exit_code == 0, first.output
    settle(plane, "iris")
    second = knserve(
        "create",
        "iris",
        "--model-format",
        "sklearn",
        "--storage-uri",
        "file:///v2",
        "--canary-traffic-percent",
        "10",
        "--no-wait",
        "-o",
        "json",
    )
    assert second.exit_code == 0, second.output
    assert "inferenceservices.serving.kserve.io/iris configured" in second.output
    isvc = plane.get(by_name("isvc"), "default", "iris")
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == "file:///v2"
    assert "minReplicas" not in predictor  # create replaces the spec, as kubectl apply does
    asyncio.run(InferenceServiceController(plane).reconcile("default", "iris"))
    traffic = plane.get(by_name("ksvc"), "default", "iris-predictor")["spec"]["traffic"]
    assert [(t["tag"], t["percent"]) for t in traffic] == [("latest", 10), ("prev", 90)]


def test_isvc_create_needs_a_file_or_the_model_flags(plane: Store) -> None:
    result = knserve("create", "iris", "--no-wait")
    assert result.exit_code == 2
    assert "give NAME --model-format F --storage-uri URI, or -f FILE" in result.output


def test_describe_keeps_the_condition_columns_apart_for_kserve_long_types(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from knserve.knative.cli.output import describe_conditions

    since = "2020-01-01T00:00:00Z"
    long = {"type": "PredictorConfigurationReady", "status": "True", "lastTransitionTime": since}
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": since}
    describe_conditions({"status": {"conditions": [ready, {**long, "reason": "Ready"}]}})
    header, _, row = capsys.readouterr().out.splitlines()[1:4]
    mark, kind, when, reason = row.split()
    assert (mark, kind, reason) == ("++", "PredictorConfigurationReady", "Ready")
    assert when.endswith("d") and header.index("AGE") == row.index(when)  # columns line up
