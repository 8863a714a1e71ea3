"""InferenceService rollouts over a real SQLite store: a canary splits with tags, promotion moves
everything to the new revision, canary zero rolls back, and a failed new revision leaves the
traffic where it was. The Serving controller is played by `serve` (tests/support/isvc_fixtures.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from isvc_fixtures import (
    ISVC,
    NS,
    R1,
    R2,
    R3,
    conditions,
    ksvc,
    rolled_out_v1,
    serve,
    split,
    status,
    update,
)

from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import InferenceServiceController


def canary(store: Store, percent: int, version: str) -> None:
    """A new model version, given `percent` of the traffic (KServe's canaryTrafficPercent)."""
    update(
        store,
        lambda spec: spec["predictor"].update(
            canaryTrafficPercent=percent,
            model={"modelFormat": {"name": "sklearn"}, "storageUri": f"file:///models/{version}"},
        ),
    )


async def canary_v2_ready(store: Store, controller: InferenceServiceController) -> None:
    """v1 rolled out, then v2 as a 20 % canary whose revision is ready."""
    await rolled_out_v1(store, controller)
    canary(store, 20, "v2")
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")


async def test_canary_splits_with_tags_then_promotion_moves_everything_to_the_new_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    canary(store, 20, "v2")
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 20},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 80},
    ]
    # While v2 starts, both entries resolve to v1: every request still reaches a ready revision.
    serve(store, ready=R1, created=R2)
    await controller.reconcile(NS, "iris")
    assert split(status(store)["components"]["predictor"]["traffic"]) == [
        ("latest", R1, 20),
        ("prev", R1, 80),
    ]
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 20), ("prev", R1, 80)]
    assert predictor["traffic"][0]["url"] == "http://latest-iris-predictor.default.localhost"
    assert predictor["traffic"][1]["url"] == "http://prev-iris-predictor.default.localhost"
    assert predictor["latestRolledoutRevision"] == R1
    assert conditions(store)["Ready"]["status"] == "True"

    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 100}
    ]
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 100)]
    assert predictor["latestRolledoutRevision"] == R2
    assert predictor["previousRolledoutRevision"] == R1


async def test_canary_zero_rolls_back_to_the_rolled_out_revision_and_keeps_latest_tagged(
    store: Store, controller: InferenceServiceController
) -> None:
    await canary_v2_ready(store, controller)

    update(store, lambda spec: spec["predictor"].update(canaryTrafficPercent=0))
    await controller.reconcile(NS, "iris")
    svc = ksvc(store)
    assert svc["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 0},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 100},
    ]
    assert svc["metadata"]["generation"] == 3  # only the traffic changed: no new template
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 0), ("prev", R1, 100)]
    assert predictor["latestRolledoutRevision"] == R1
    assert predictor["latestReadyRevision"] == R2


async def test_canary_zero_after_a_promote_rolls_back_to_the_previous_rolled_out_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await canary_v2_ready(store, controller)
    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))  # promote
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == (
        R2,
        R1,
    )

    update(store, lambda spec: spec["predictor"].update(canaryTrafficPercent=0))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)  # Knative reports the split the first translation made ...
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)  # ... and the one KServe's status rule leads to
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 0},
        {"tag": "prev", "revisionName": R1, "latestRevision": False, "percent": 100},
    ]
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 0), ("prev", R1, 100)]
    assert predictor["latestRolledoutRevision"] == R1
    assert conditions(store)["Ready"]["status"] == "True"
    version = store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"]
    await controller.reconcile(NS, "iris")  # settled: nothing left to change
    assert store.get(ISVC, NS, "iris")["metadata"]["resourceVersion"] == version

    # promoting again (the field removed) hands everything back to the latest revision
    update(store, lambda spec: spec["predictor"].pop("canaryTrafficPercent"))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R2, 100)]
    assert predictor["latestRolledoutRevision"] == R2


async def test_a_later_canary_splits_against_the_promoted_revision(
    store: Store, controller: InferenceServiceController
) -> None:
    await rolled_out_v1(store, controller)
    update(store, lambda spec: spec["predictor"]["model"].update(storageUri="file:///models/v2"))
    await controller.reconcile(NS, "iris")
    serve(store, ready=R2)
    await controller.reconcile(NS, "iris")
    canary(store, 10, "v3")
    await controller.reconcile(NS, "iris")
    assert ksvc(store)["spec"]["traffic"][1] == {
        "tag": "prev",
        "revisionName": R2,
        "latestRevision": False,
        "percent": 90,
    }
    serve(store, ready=R3)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert split(predictor["traffic"]) == [("latest", R3, 10), ("prev", R2, 90)]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == (
        R2,
        R1,
    )


@pytest.mark.parametrize(
    "canary", [pytest.param(20, id="canary"), pytest.param(None, id="no-canary")]
)
async def test_a_failed_new_revision_leaves_the_traffic_on_the_previous_one(
    store: Store, controller: InferenceServiceController, canary: int | None
) -> None:
    await rolled_out_v1(store, controller)

    def change(spec: dict[str, Any]) -> None:
        spec["predictor"]["model"]["storageUri"] = "file:///models/broken"
        if canary is not None:
            spec["predictor"]["canaryTrafficPercent"] = canary

    update(store, change)
    await controller.reconcile(NS, "iris")
    serve(store, ready=R1, created=R2, failed=True)
    await controller.reconcile(NS, "iris")
    predictor = status(store)["components"]["predictor"]
    assert {t["revisionName"] for t in predictor["traffic"]} == {R1}
    assert sum(t["percent"] for t in predictor["traffic"]) == 100
    assert predictor["latestCreatedRevision"] == R2
    assert predictor["latestReadyRevision"] == predictor["latestRolledoutRevision"] == R1
    conds = conditions(store)
    assert conds["PredictorReady"]["status"] == "False"
    assert R2 in conds["PredictorReady"]["message"]
    assert conds["Ready"]["status"] == "False"
