"""The InferenceService's model status: a model that fails to load is its exit code and reason,
a spec that cannot be served is InvalidSpec. The Serving controller and the crashed Revision are
written by hand (tests/support/isvc_fixtures.py, `crashed` here).
"""

from __future__ import annotations

from typing import Any

import pytest
from isvc_fixtures import (
    ISVC,
    NS,
    R1,
    R2,
    REVISION,
    conditions,
    iris,
    ksvc,
    rolled_out_v1,
    serve,
    status,
    update,
)

from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import InferenceServiceController


def crashed(store: Store, revision: str, code: int, message: str) -> None:
    """The Revision as Knative writes it when its container exited (the Serving controller's
    contract): ContainerHealthy False with reason ExitCode{N} and the termination message."""
    store.create(
        REVISION,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": revision, "namespace": NS},
            "spec": ksvc(store)["spec"]["template"]["spec"],
        },
        validate=False,
    )
    obj = store.get(REVISION, NS, revision)
    failure = {
        "status": "False",
        "reason": f"ExitCode{code}",
        "message": f"Container failed with: {message}",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    obj["status"] = {
        "conditions": [{"type": "Ready", **failure}, {"type": "ContainerHealthy", **failure}]
    }
    store.replace(REVISION, obj, subresource="status")


LOAD_FAILURE = "model iris failed to load: cannot read /models/broken/model.joblib: EOFError"


@pytest.mark.parametrize(
    ("first", "active"),
    [
        pytest.param(True, "Pending", id="first-deploy"),
        pytest.param(False, "Loaded", id="new-version"),
    ],
)
async def test_a_model_that_fails_to_load_is_the_model_status_with_its_exit_code_and_reason(
    store: Store, controller: InferenceServiceController, first: bool, active: str
) -> None:
    if first:
        store.create(
            ISVC,
            iris(model={"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/broken"}),
        )
        await controller.reconcile(NS, "iris")
        assert status(store)["modelStatus"] == {
            "transitionStatus": "InProgress",
            "states": {"activeModelState": "Pending", "targetModelState": "Pending"},
        }
        broken, serving = R1, None
    else:
        await rolled_out_v1(store, controller)
        update(
            store,
            lambda spec: spec["predictor"]["model"].update(storageUri="file:///models/broken"),
        )
        await controller.reconcile(NS, "iris")
        broken, serving = R2, R1
    crashed(store, broken, 1, LOAD_FAILURE)
    serve(store, ready=serving, created=broken, failed=True)
    await controller.reconcile(NS, "iris")
    got = status(store)
    assert got["modelStatus"] == {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": active, "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {
            "reason": "ModelLoadFailed",
            "message": LOAD_FAILURE,
            "exitCode": 1,
            "location": broken,
            "time": "2025-01-01T00:00:00Z",
        },
    }
    conds = conditions(store)
    assert (
        conds["PredictorConfigurationReady"]["status"],
        conds["LatestDeploymentReady"]["status"],
    ) == (
        "False",
        "False",
    )
    assert conds["LatestDeploymentReady"]["reason"] == "PredictorConfigurationReady not ready"
    # the previous version still serves; with none, the route waits for a ready revision
    assert conds["RoutesReady"]["status"] == ("Unknown" if first else "True")


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        pytest.param({"modelFormat": {"name": "cobol"}}, "NoSupportingRuntime", id="no-runtime"),
        pytest.param(
            {"modelFormat": {"name": "tensorrt"}, "protocolVersion": "v2"},
            "RuntimeUnhealthy",
            id="engine-unavailable",
        ),
        pytest.param(
            {"modelFormat": {"name": "sklearn"}, "runtime": "nope"},
            "RuntimeNotRecognized",
            id="unknown-runtime",
        ),
        pytest.param(
            {"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://m"},
            "InvalidPredictorSpec",
            id="storage-uri",
        ),
    ],
)
async def test_a_spec_that_cannot_be_served_is_the_model_status_invalid_spec(
    store: Store, controller: InferenceServiceController, model: dict[str, Any], reason: str
) -> None:
    store.create(ISVC, iris(model=model))
    await controller.reconcile(NS, "iris")
    got = status(store)["modelStatus"]
    assert got["transitionStatus"] == "InvalidSpec"
    assert got["states"] == {"activeModelState": "Pending", "targetModelState": "FailedToLoad"}
    assert got["lastFailureInfo"]["reason"] == reason
    assert got["lastFailureInfo"]["message"] == conditions(store)["Ready"]["message"]
