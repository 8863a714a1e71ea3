"""KServe's `status.modelStatus` of an InferenceService, from its predictor's latest revision.

KServe (`PropagateModelStatus`, `UpdateModelRevisionStates` and `UpdateModelTransitionStatus` in
`inference_service_status.go`) reports the predictor's model as:

- `states.targetModelState`, the model the spec asks for: `Pending` while no replica of its
  revision runs, `Loading` while one starts and loads it, `Loaded` once the InferenceService is
  Ready with that revision (the latest created one is the latest ready one), `FailedToLoad` when
  its replica exited (the Revision's `ContainerHealthy` is False with reason `ExitCode{N}`, as
  Knative writes a crashed container), when the Knative Service reports a failure, or when the
  spec cannot be served (an invalid spec, no runtime for its format);
- `states.activeModelState`, the model that serves: `Loaded` once one was, else `Pending`; a
  new version that fails leaves it `Loaded` (the previous revision keeps the traffic);
- `transitionStatus`: `InProgress` while Pending or Loading, `UpToDate` when Loaded,
  `BlockedByFailedLoad` after a failure to load, `InvalidSpec` when the spec is at fault;
- `lastFailureInfo`: why the last attempt failed. For a crashed replica: reason
  `ModelLoadFailed`, the container's termination message (the model server's last words, such as
  `model sklearn-iris failed to load: …`), its `exitCode`, the revision as `location` and when
  it happened; for a spec at fault: KServe's reason (`NoSupportingRuntime`,
  `RuntimeNotRecognized`, `RuntimeDisabled`, `InvalidPredictorSpec`) and the message. As in
  KServe it is kept once set, until a later failure replaces it.

Pure: the caller hands in the revision (None when there is none or it is not worth reading).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Knative's prefix of a crashed container's termination message on the Revision.
CONTAINER_FAILED = "Container failed with: "
_EXIT_CODE = re.compile(r"ExitCode(-?\d+)$")


def model_status(
    previous: Mapping[str, Any],
    *,
    ready: bool,
    component: Mapping[str, Any],
    ksvc: Mapping[str, Any] | None,
    revision: Mapping[str, Any] | None,
    spec_failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The predictor's modelStatus (module docstring).

    `previous` is the last modelStatus; `ready` whether the InferenceService is Ready;
    `component` its `status.components.predictor`; `ksvc` the predictor's Knative Service;
    `revision` the predictor's latest created Revision; `spec_failure` KServe's (reason,
    message) when the spec cannot be served.
    """
    active = (previous.get("states") or {}).get("activeModelState") or "Pending"
    failure = previous.get("lastFailureInfo")
    created = component.get("latestCreatedRevision")
    if spec_failure is not None:
        target, transition = "FailedToLoad", "InvalidSpec"
        failure = {"reason": spec_failure[0], "message": spec_failure[1]}
    elif ready and created and created == component.get("latestReadyRevision"):
        target = active = "Loaded"
        transition = "UpToDate"
    elif (crash := container_failure(revision)) is not None:
        target, transition, failure = "FailedToLoad", "BlockedByFailedLoad", crash
    elif _has_false_condition(ksvc):
        # KServe: "hopefully the lastFailureInfo already has the info we need"
        target, transition = "FailedToLoad", "BlockedByFailedLoad"
    else:
        starting = revision is not None and (revision.get("status") or {}).get("desiredReplicas")
        target, transition = ("Loading" if starting else "Pending"), "InProgress"
    out: dict[str, Any] = {
        "transitionStatus": transition,
        "states": {"activeModelState": active, "targetModelState": target},
    }
    if failure:
        out["lastFailureInfo"] = dict(failure)
    return out


def container_failure(revision: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """KServe's FailureInfo of a Revision whose container exited, or None when it did not."""
    if revision is None:
        return None
    for cond in (revision.get("status") or {}).get("conditions") or []:
        reason = str(cond.get("reason") or "")
        if cond.get("type") != "ContainerHealthy" or cond.get("status") != "False":
            continue
        if not reason.startswith("ExitCode"):
            continue
        message = str(cond.get("message") or "")
        info: dict[str, Any] = {
            "location": revision["metadata"]["name"],
            "reason": "ModelLoadFailed",
            "message": message.removeprefix(CONTAINER_FAILED).strip(),
        }
        code = _EXIT_CODE.match(reason)
        if code:
            info["exitCode"] = int(code.group(1))
        if cond.get("lastTransitionTime"):
            info["time"] = cond["lastTransitionTime"]
        return info
    return None


def _has_false_condition(ksvc: Mapping[str, Any] | None) -> bool:
    conditions = ((ksvc or {}).get("status") or {}).get("conditions") or []
    return any(c.get("status") == "False" for c in conditions)
