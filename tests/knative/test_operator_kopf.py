"""The kopf operator running: in a thread and as the Deployment runs its process, against a
Kubernetes-API server on loopback (the local plane's control API), and its command line.
Knative's part is written through the API as Knative would (tests/support/operator_fixtures.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from net_fixtures import eventually, free_port
from operator_fixtures import ISVCS, SERVICES, conditions, iris, knative_marks_ready

from knserve.knative.kube.client import KubeClient
from knserve.knative.kube.operator import ANNOTATION_PREFIX, main, run

# ---- kopf --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "scope",
    [
        # Exact namespaces; scanning off, since the control API lists no namespaces.
        pytest.param({"namespaces": ["default"], "scanning": False}, id="namespaced"),
        # What the Deployment runs: every namespace, with kopf's resource scanning.
        pytest.param({"clusterwide": True}, id="all-namespaces"),
    ],
)
def test_the_kopf_operator_reconciles_an_inferenceservice_on_a_loopback_api_server(
    kube: KubeClient, kubeconfig: Path, scope: dict[str, Any]
) -> None:
    operator_client = KubeClient.from_kubeconfig(kubeconfig)
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def operate() -> None:
        try:
            run(operator_client, posting=False, stop_flag=stop, ready_flag=ready, **scope)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=operate, name="kopf-operator")
    thread.start()
    try:
        assert ready.wait(15), failures
        kube.apply(iris())
        ksvc = eventually(lambda: kube.find(SERVICES, "default", "iris-predictor"))
        isvc = kube.get(ISVCS, "default", "iris")
        assert ksvc["metadata"]["ownerReferences"][0]["uid"] == isvc["metadata"]["uid"]
        eventually(lambda: conditions(kube.get(ISVCS, "default", "iris")).get("Ready") == "Unknown")
        # kopf's annotations on the InferenceService do not leak into the template: no new revision.
        assert kube.get(SERVICES, "default", "iris-predictor")["metadata"]["generation"] == 1

        # Knative's status change reaches the InferenceService through the Service's events.
        knative_marks_ready(kube, "iris-predictor", "iris-predictor-00001")

        def ready_isvc() -> dict[str, Any] | None:
            found = kube.get(ISVCS, "default", "iris")
            return found if conditions(found).get("Ready") == "True" else None

        isvc = eventually(ready_isvc)
        assert (
            isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
            == "iris-predictor-00001"
        )

        # An update of the spec is a canary rollout.
        kube.apply(iris(canary=10, storage="gs://kfserving-examples/models/sklearn/2.0/model"))
        eventually(
            lambda: len(kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"]) == 2
        )
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive() and not failures
    isvc = kube.get(ISVCS, "default", "iris")
    kopf_keys = [
        key
        for key in isvc["metadata"].get("annotations", {})
        if "kopf" in key or "last-handled" in key
    ]
    assert kopf_keys and all(key.startswith(f"{ANNOTATION_PREFIX}/") for key in kopf_keys)
    assert set(isvc["status"]) <= {
        "observedGeneration",
        "components",
        "conditions",
        "url",
        "address",
        "modelStatus",
    }


@pytest.mark.slow
def test_the_operator_process_runs_as_the_deployment_runs_it(
    kube: KubeClient, kubeconfig: Path, spawn: Any
) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = ["--all-namespaces", "--standalone", f"--liveness={liveness}"]  # the Deployment's
    operator = spawn(
        [
            sys.executable,
            "-m",
            "knserve.knative.operator",
            *args,
            "--no-posting",
            "--kubeconfig",
            str(kubeconfig),
        ]
    )
    operator.wait_http(liveness)
    kube.apply(iris())
    eventually(lambda: kube.find(SERVICES, "default", "iris-predictor"))
    assert operator.stop() == 0, operator.log()  # SIGTERM: kopf stops cleanly


def test_the_operator_needs_namespaces_or_all_of_them() -> None:
    result = CliRunner().invoke(main, [])
    assert (
        result.exit_code == 2
        and "--namespace NAME (repeatable) or --all-namespaces" in result.output
    )


def test_the_operator_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "knserve.knative.operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "--all-namespaces" in done.stdout
