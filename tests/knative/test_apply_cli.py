"""`knserve apply -f` is kubectl's apply: last-applied configuration and a three-way merge."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.cli import root
from knserve.knative.cli.last_applied import LAST_APPLIED, three_way_merge_patch, with_last_applied

ISVCS = by_name("inferenceservices")
# KServe's canary example (docs: "Canary rollout"), then its promote step: the same object without
# canaryTrafficPercent.
CANARY: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {
        "name": "sklearn-iris",
        "annotations": {"serving.kserve.io/enable-tag-routing": "true"},
    },
    "spec": {
        "predictor": {
            "canaryTrafficPercent": 10,
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model-2",
            },
        }
    },
}


def apply(api: Client, tmp_path: Path, obj: dict[str, Any]) -> Result:
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(obj))
    return CliRunner().invoke(root, ["apply", "-f", str(path)], env={"KNSERVE_API": api.base_url})


def isvc(api: Client) -> dict[str, Any]:
    return api.get(ISVCS, "default", "sklearn-iris")


def promoted() -> dict[str, Any]:
    obj = copy.deepcopy(CANARY)
    del obj["spec"]["predictor"]["canaryTrafficPercent"]
    del obj["metadata"]["annotations"]
    return obj


def test_what_the_file_no_longer_has_is_removed_and_what_others_set_stays(
    control_api: Client, tmp_path: Path
) -> None:
    created = apply(control_api, tmp_path, CANARY)
    assert created.exit_code == 0, created.output
    assert created.output == "inferenceservices.serving.kserve.io/sklearn-iris created\n"
    recorded = json.loads(isvc(control_api)["metadata"]["annotations"][LAST_APPLIED])
    assert recorded == {**CANARY, "metadata": {**CANARY["metadata"], "namespace": "default"}}

    # another writer (kubectl patch, a controller) sets a field the file never had
    control_api.patch(ISVCS, "default", "sklearn-iris", {"spec": {"predictor": {"minReplicas": 2}}})

    promote = apply(control_api, tmp_path, promoted())
    assert promote.exit_code == 0, promote.output
    assert promote.output == "inferenceservices.serving.kserve.io/sklearn-iris configured\n"
    after = isvc(control_api)
    assert "canaryTrafficPercent" not in after["spec"]["predictor"]
    assert after["spec"]["predictor"]["minReplicas"] == 2
    assert after["spec"]["predictor"]["model"] == CANARY["spec"]["predictor"]["model"]
    assert list(after["metadata"]["annotations"]) == [LAST_APPLIED]

    again = apply(control_api, tmp_path, promoted())
    assert again.output == "inferenceservices.serving.kserve.io/sklearn-iris unchanged\n"
    assert isvc(control_api)["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]


def test_an_object_without_last_applied_loses_nothing_the_first_time(
    control_api: Client, tmp_path: Path
) -> None:
    control_api.create(ISVCS, copy.deepcopy(CANARY))  # `create`, not `apply`: no annotation
    first = apply(control_api, tmp_path, promoted())
    assert first.exit_code == 0, first.output
    assert "has no kubectl.kubernetes.io/last-applied-configuration annotation" in first.output
    kept = isvc(control_api)
    assert kept["spec"]["predictor"]["canaryTrafficPercent"] == 10  # as kubectl: nothing removed
    assert kept["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert LAST_APPLIED in kept["metadata"]["annotations"]

    apply(control_api, tmp_path, CANARY)  # now recorded as applied …
    second = apply(control_api, tmp_path, promoted())  # … so removing it removes it
    assert second.exit_code == 0, second.output
    assert "canaryTrafficPercent" not in isvc(control_api)["spec"]["predictor"]


@pytest.mark.parametrize(
    ("original", "modified", "current", "patch"),
    [
        # a list is one value (no strategic-merge keys): replaced whole when it differs
        ({"args": ["a", "b"]}, {"args": ["a"]}, {"args": ["a", "b"]}, {"args": ["a"]}),
        # removed from the file and from last-applied: deleted; set by someone else: kept
        ({"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, {"b": None}),
        # nested maps merge; a key the file gave back is not deleted
        ({"m": {"x": 1}}, {"m": {"y": 2}}, {"m": {"x": 1, "z": 0}}, {"m": {"x": None, "y": 2}}),
        # no last-applied: only additions and changes
        (None, {"a": 2}, {"a": 1, "b": 1}, {"a": 2}),
        # already as applied
        ({"a": 1}, {"a": 1}, {"a": 1, "z": 9}, {}),
        # an explicit empty map is a value
        ({}, {"m": {}}, {}, {"m": {}}),
    ],
)
def test_three_way_merge_patch_is_kubectls(
    original: dict[str, Any] | None,
    modified: dict[str, Any],
    current: dict[str, Any],
    patch: dict[str, Any],
) -> None:
    assert three_way_merge_patch(original, modified, current) == patch


def test_the_annotation_holds_the_object_without_itself() -> None:
    obj = {"kind": "K", "metadata": {"name": "n", "annotations": {LAST_APPLIED: "old", "a": "1"}}}
    annotations = with_last_applied(obj)["metadata"]["annotations"]
    assert annotations["a"] == "1"
    assert (
        annotations[LAST_APPLIED]
        == '{"kind":"K","metadata":{"annotations":{"a":"1"},"name":"n"}}\n'
    )
