"""ClusterServingRuntime as a served kind: KServe's stock YAMLs applied unchanged through the API,
the CLI and the kube target, KServe's admission rules, and the controller reacting to them."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from isvc_fixtures import ISVC, NS, SERVICE, conditions, iris, ksvc
from net_fixtures import eventually

from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.errors import Invalid, NotFound
from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Store
from knserve.knative.cli import root
from knserve.knative.kserve.controller import InferenceServiceController
from knserve.knative.kserve.runtime_install import (
    BUILTIN_ANNOTATION,
    install_builtin_runtimes,
    spec_digest,
)
from knserve.knative.kserve.runtimes import STOCK_DIR, builtin_runtimes
from knserve.knative.kube.client import KubeClient
from knserve.knative.kube.operator import Reconciler, run

CSR = named("clusterservingruntimes")
SR = named("servingruntimes")


def stock(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((STOCK_DIR / f"{name}.yaml").read_text())
    return loaded


def test_a_stock_runtime_yaml_applies_unchanged_with_knserve_apply(
    control_api: Client, tmp_path: Path
) -> None:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        "\n---\n".join(
            (STOCK_DIR / f"{n}.yaml").read_text()
            for n in ("kserve-mlserver", "kserve-tritonserver")
        )
    )
    env = {"KNSERVE_API": control_api.base_url}
    result = CliRunner().invoke(root, ["apply", "-f", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "clusterservingruntimes.serving.kserve.io/kserve-mlserver created" in result.output
    stored = control_api.get(CSR, "", "kserve-mlserver")
    assert "namespace" not in stored["metadata"]
    assert stored["spec"] == stock("kserve-mlserver")["spec"]
    again = CliRunner().invoke(root, ["apply", "-f", str(path)], env=env)
    assert again.exit_code == 0, again.output
    assert "kserve-tritonserver unchanged" in again.output
    # `knserve isvc apply -f` takes them too
    other = tmp_path / "hf.yaml"
    other.write_text((STOCK_DIR / "kserve-huggingfaceserver.yaml").read_text())
    by_isvc = CliRunner().invoke(root, ["isvc", "apply", "-f", str(other)], env=env)
    assert by_isvc.exit_code == 0, by_isvc.output
    assert "clusterservingruntimes.serving.kserve.io/kserve-huggingfaceserver created" in (
        by_isvc.output
    )
    names = [r["metadata"]["name"] for r in control_api.list(CSR)]
    assert names == ["kserve-huggingfaceserver", "kserve-mlserver", "kserve-tritonserver"]
    deleted = CliRunner().invoke(root, ["delete", "-f", str(path)], env=env)
    assert deleted.exit_code == 0, deleted.output
    assert "clusterservingruntimes.serving.kserve.io/kserve-mlserver deleted" in deleted.output
    assert [r["metadata"]["name"] for r in control_api.list(CSR)] == ["kserve-huggingfaceserver"]


def test_cluster_scoped_paths_as_the_api_server_has_them(control_api: Client) -> None:
    base = f"{control_api.base_url}/apis/serving.kserve.io/v1alpha1"
    body = stock("kserve-sklearnserver")
    body["metadata"]["namespace"] = "ignored"  # the API server drops it for a cluster kind
    created = httpx.post(f"{base}/clusterservingruntimes", json=body)
    assert created.status_code == 201, created.text
    assert "namespace" not in created.json()["metadata"]
    assert httpx.get(f"{base}/clusterservingruntimes/kserve-sklearnserver").status_code == 200
    wrong = httpx.get(f"{base}/namespaces/default/clusterservingruntimes/kserve-sklearnserver")
    assert wrong.status_code == 404
    assert "cluster-scoped" in wrong.json()["message"]
    discovery = httpx.get(base).json()["resources"]
    scope = {r["name"]: r["namespaced"] for r in discovery}
    assert scope["clusterservingruntimes"] is False and scope["servingruntimes"] is True
    deleted = httpx.delete(f"{base}/clusterservingruntimes/kserve-sklearnserver")
    assert deleted.status_code == 200
    with pytest.raises(NotFound, match='"kserve-sklearnserver" not found'):
        control_api.get(CSR, "", "kserve-sklearnserver")


def test_the_crd_schema_and_kserve_s_priority_rules_are_admission(store: Store) -> None:
    bad = stock("kserve-sklearnserver")
    bad["spec"]["supportedModelFormats"][0]["priority"] = 0  # the schema's minimum is 1
    with pytest.raises(Invalid, match="priority"):
        store.create(CSR, bad)
    mixed = stock("kserve-mlserver")
    mixed["spec"]["supportedModelFormats"][1]["priority"] = 7  # sklearn 0 has 2, sklearn 1 has 7
    with pytest.raises(Invalid, match="different priorities assigned for the model format sklearn"):
        store.create(CSR, mixed)
    store.create(CSR, stock("kserve-sklearnserver"))
    clash = stock("kserve-sklearnserver")
    clash["metadata"]["name"] = "my-sklearn"
    with pytest.raises(Invalid, match="same priority assigned for the model format sklearn"):
        store.create(CSR, clash)
    clash["spec"]["supportedModelFormats"][0]["priority"] = 2
    store.create(CSR, clash)  # another priority: auto-selection can choose
    # a namespace's ServingRuntimes are compared among themselves only
    namespaced = {**stock("kserve-sklearnserver"), "kind": "ServingRuntime"}
    namespaced["metadata"] = {"name": "ns-sklearn", "namespace": NS}
    store.create(SR, namespaced)
    # a disabled runtime is never compared
    disabled = copy.deepcopy(clash)
    disabled["metadata"]["name"] = "off"
    disabled["spec"]["disabled"] = True
    store.create(CSR, disabled)


async def test_the_controller_reconciles_again_when_a_cluster_runtime_changes(
    store: Store, controller: InferenceServiceController
) -> None:
    store.create(ISVC, iris())
    await controller.reconcile(NS, "iris")
    image = ksvc(store)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "kserve/sklearnserver:v0.21.0"
    # the user's ClusterServingRuntime of the stock name replaces the built-in
    mine = stock("kserve-sklearnserver")
    mine["spec"]["containers"][0]["image"] = "knserve/runtime:v2"
    queue = store.watch()
    store.create(CSR, mine)
    event = queue.get_nowait()
    await controller._handle(event)
    assert controller._queue._pending == {(NS, "iris")}
    await controller.reconcile(NS, "iris")
    container = ksvc(store)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "knserve/runtime:v2"
    # disabling it leaves no runtime for sklearn v1: InvalidSpec with KServe's reason
    mine = store.get(CSR, "", "kserve-sklearnserver")
    mine["spec"]["disabled"] = True
    store.replace(CSR, mine)
    await controller.reconcile(NS, "iris")
    ready = conditions(store)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "no runtime found to support model format 'sklearn'" in ready["message"]
    model = store.get(ISVC, NS, "iris")["status"]["modelStatus"]
    assert model["lastFailureInfo"]["reason"] == "NoSupportingRuntime"


async def test_an_engine_that_cannot_run_here_is_a_clear_condition(
    store: Store, controller: InferenceServiceController, tmp_path: Path
) -> None:
    obj = iris(
        model={
            "modelFormat": {"name": "tensorrt"},
            "protocolVersion": "v2",
            "storageUri": "gs://models/trt",
        }
    )
    store.create(ISVC, obj)
    await controller.reconcile(NS, "iris")
    ready = conditions(store)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "EngineUnavailable")
    assert "NVIDIA Triton Inference Server" in ready["message"]
    assert "knserve-onnxruntime" in ready["message"]  # what to use instead
    assert store.list(SERVICE, NS) == []
    model = store.get(ISVC, NS, "iris")["status"]["modelStatus"]
    assert model["lastFailureInfo"]["reason"] == "RuntimeUnhealthy"
    # the same InferenceService exports for a cluster, with Triton's own args
    path = tmp_path / "trt.yaml"
    path.write_text(yaml.safe_dump(obj))
    result = CliRunner().invoke(root, ["export", "-f", str(path), "--target", "kube"])
    assert result.exit_code == 0, result.output
    (exported,) = yaml.safe_load_all(result.output)
    container = exported["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nvcr.io/nvidia/tritonserver:23.05-py3"
    assert container["args"][:2] == ["tritonserver", "--model-store=/mnt/models"]


async def test_a_pytorch_model_selects_torchserve_as_kserve_does_and_says_what_to_use(
    store: Store, controller: InferenceServiceController
) -> None:
    store.create(ISVC, iris(model={"modelFormat": {"name": "pytorch"}, "storageUri": "gs://m/p"}))
    await controller.reconcile(NS, "iris")
    ready = conditions(store)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "EngineUnavailable")
    assert "pytorch/torchserve-kfs" in ready["message"]
    assert "knserve-pytorch" in ready["message"]  # what to use instead
    assert store.list(SERVICE, NS) == []
    # naming knserve's runtime serves TorchScript and .pt2 with the same YAML otherwise
    obj = store.get(ISVC, NS, "iris")
    obj["spec"]["predictor"]["model"]["runtime"] = "knserve-pytorch"
    store.replace(ISVC, obj)
    await controller.reconcile(NS, "iris")
    (svc,) = store.list(SERVICE, NS)
    assert svc["spec"]["template"]["spec"]["containers"][0]["image"].startswith("knserve/runtime")


def test_the_kube_target_applies_and_reads_cluster_runtimes(kube: KubeClient) -> None:
    mine = stock("kserve-predictiveserver")
    mine["spec"]["containers"][0]["args"][-1] = "--nthread=2"  # tells the cluster's from ours
    action, applied = kube.apply(mine)
    assert action == "created" and "namespace" not in applied["metadata"]
    assert kube.get(CSR, "", "kserve-predictiveserver")["spec"]["supportedModelFormats"]
    assert [r["metadata"]["name"] for r in kube.list(CSR)] == ["kserve-predictiveserver"]
    # the operator selects among them: the cluster's replaces the built-in of its name
    isvc = iris(
        model={
            "modelFormat": {"name": "xgboost"},
            "runtime": "kserve-predictiveserver",
            "storageUri": "gs://models/xgb",
        }
    )
    kube.apply(isvc)
    Reconciler(kube).reconcile("default", "iris")
    container = kube.get(SERVICE, "default", "iris-predictor")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["args"] == [
        "--model_name=iris",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--framework=xgboost",
        "--nthread=2",
    ]
    kube.delete(CSR, "", "kserve-predictiveserver")
    assert kube.list(CSR) == []


def test_every_built_in_runtime_passes_the_crd_schema_and_kserve_s_admission(store: Store) -> None:
    for runtime in builtin_runtimes():
        store.create(CSR, runtime)  # validated, priorities compared with those created before
    assert len(store.list(CSR)) == len(builtin_runtimes())


def test_the_plane_installs_the_built_in_runtimes_once_and_keeps_a_user_s_change(
    store: Store,
) -> None:
    mine = stock("kserve-xgbserver")
    mine["spec"]["disabled"] = True
    store.create(CSR, mine)
    created = install_builtin_runtimes(store)
    assert "kserve-xgbserver" not in created and "kserve-sklearnserver" in created
    assert store.get(CSR, "", "kserve-xgbserver")["spec"]["disabled"] is True
    assert install_builtin_runtimes(store) == []
    names = {r["metadata"]["name"] for r in store.list(CSR)}
    assert names == {r["metadata"]["name"] for r in builtin_runtimes()}
    # one installed by an older knserve is upgraded; one the user edited since is not
    older = store.get(CSR, "", "kserve-lgbserver")
    older["spec"]["containers"][0]["image"] = "kserve/lgbserver:v0.20.0"
    older["metadata"]["annotations"][BUILTIN_ANNOTATION] = spec_digest(older["spec"])
    store.replace(CSR, older)
    edited = store.get(CSR, "", "kserve-pmmlserver")
    edited["spec"]["containers"][0]["args"].append("--workers=2")
    store.replace(CSR, edited)
    assert install_builtin_runtimes(store) == ["kserve-lgbserver"]
    lgb = store.get(CSR, "", "kserve-lgbserver")["spec"]["containers"][0]["image"]
    assert lgb == "kserve/lgbserver:v0.21.0"
    pmml = store.get(CSR, "", "kserve-pmmlserver")["spec"]["containers"][0]["args"]
    assert pmml[-1] == "--workers=2"


@pytest.mark.slow
def test_the_kopf_operator_reconciles_again_when_a_cluster_runtime_changes(
    kube: KubeClient, kubeconfig: Path
) -> None:
    operator_client = KubeClient.from_kubeconfig(kubeconfig)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=run,
        args=(operator_client,),
        kwargs={"posting": False, "stop_flag": stop, "ready_flag": ready, "clusterwide": True},
        name="kopf-operator",
    )
    thread.start()
    try:
        assert ready.wait(15)
        kube.apply(iris())

        def image() -> str | None:
            found = kube.find(SERVICE, "default", "iris-predictor")
            return found["spec"]["template"]["spec"]["containers"][0]["image"] if found else None

        assert eventually(image) == "kserve/sklearnserver:v0.21.0"
        mine = stock("kserve-sklearnserver")
        mine["spec"]["containers"][0]["image"] = "kserve/sklearnserver:mine"
        kube.apply(mine)  # a ClusterServingRuntime event: every InferenceService again
        eventually(lambda: image() == "kserve/sklearnserver:mine")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def test_export_selects_among_the_file_s_cluster_runtimes(tmp_path: Path) -> None:
    mine = stock("kserve-sklearnserver")
    mine["spec"]["containers"][0]["image"] = "registry.example/sklearnserver:mine"
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all([mine, iris()]))
    result = CliRunner().invoke(root, ["export", "-f", str(path), "--target", "kube"])
    assert result.exit_code == 0, result.output
    (exported,) = yaml.safe_load_all(result.output)
    container = exported["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/sklearnserver:mine"
    assert container["args"] == ["--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"]
