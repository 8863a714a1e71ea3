"""The control plane's error hierarchy; each error is a Kubernetes `Status` failure.

    ApiError (500, InternalError)
    ├── BadRequest (400)
    ├── NotFound (404)
    ├── AlreadyExists (409)
    ├── Conflict (409)          a stale resourceVersion: re-read the object and retry
    ├── Expired (410)           a watch from a resourceVersion older than the history kept: list again
    └── Invalid (422)           the object breaks its schema or a Knative rule

The API turns any of them into `{"kind": "Status", "status": "Failure", "reason", "code",
"message"}`, and the client turns such a body back into the same class, so the CLI and the
controller see the same errors on the local plane and on a cluster.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
        }


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Expired(ApiError):
    code, reason = 410, "Expired"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


_BY_REASON = {
    cls.reason: cls for cls in (BadRequest, NotFound, AlreadyExists, Conflict, Expired, Invalid)
}


def from_status(body: dict[str, Any], code: int) -> ApiError:
    """The error a `Status` body describes (the client's side of the mapping)."""
    cls = _BY_REASON.get(body.get("reason", ""), ApiError)
    error = cls(body.get("message") or f"HTTP {code}")
    error.code = body.get("code", code)
    return error
