"""The one 'apply the desired, delete the undeclared' step of the local controller and the operator."""

from __future__ import annotations

from typing import Any

from knserve.knative.kserve.controller import ServiceWrite, plan_services
from knserve.knative.kserve.inferenceservice import COMPONENT_LABEL

ISVC = {"kind": "InferenceService", "metadata": {"name": "iris", "namespace": "ns", "uid": "u-1"}}


def ksvc(component: str, owner_uid: str | None = "u-1") -> dict[str, Any]:
    refs = [{"kind": "InferenceService", "uid": owner_uid, "controller": True}] if owner_uid else []
    return {
        "metadata": {
            "name": f"iris-{component}",
            "labels": {COMPONENT_LABEL: component},
            "ownerReferences": refs,
        },
        "spec": {"template": {"spec": {"containers": [{"image": component}]}}},
    }


def test_owned_components_are_updated_new_ones_created_and_undeclared_ones_deleted() -> None:
    owned = {"predictor": ksvc("predictor"), "explainer": ksvc("explainer")}
    desired = [ksvc("predictor"), ksvc("transformer")]
    plan = plan_services(ISVC, owned, desired, lambda name: None)
    assert plan.writes == [
        ServiceWrite("predictor", desired[0], owned["predictor"]),
        ServiceWrite("transformer", desired[1], None),
    ]
    assert plan.deletes == ["iris-explainer"]
    assert plan.error is None


def test_a_name_held_by_another_owner_is_a_conflict_and_left_alone() -> None:
    theirs = ksvc("predictor", owner_uid="someone-else")
    plan = plan_services(ISVC, {}, [ksvc("predictor")], {"iris-predictor": theirs}.get)
    assert plan.writes == [] and plan.deletes == []
    assert plan.error is not None and plan.error.reason == "ServiceConflict"
    assert "'iris-predictor' already exists and is not owned by InferenceService 'iris'" in (
        plan.error.message
    )


def test_a_service_this_inferenceservice_controls_is_updated_even_when_not_listed_as_owned() -> (
    None
):
    ours = ksvc("predictor")  # e.g. its component label was edited away by hand
    plan = plan_services(ISVC, {}, [ksvc("predictor")], {"iris-predictor": ours}.get)
    assert plan.writes == [ServiceWrite("predictor", ksvc("predictor"), ours)]
    assert plan.error is None
