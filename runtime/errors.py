"""The data plane's one error hierarchy; each error carries its HTTP status.

    InferenceError (500)
    ├── InvalidInput (400)          the request body, a tensor, a datatype or a shape is wrong
    ├── ModelNotFound (404)         no model of that name (or version) is served here
    ├── NotImplementedByModel (501) the model has no such verb (explain on a model without one)
    ├── ModelNotReady (503)         the model exists but is loading, unloaded or failed to load
    ├── PayloadTooLarge (413)
    ├── BatchTimeout (504)          a batched request outwaited the batcher's timeout
    └── UpstreamError (502)         a model that calls another server (an explainer's predictor) failed there

One handler in the ASGI app turns any of them into `{"error": message}` with the status, so the
messages are written for the caller: they say what was wrong and what to send instead.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error the model server answers with; `status` is the HTTP status code."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(InferenceError):
    status = 400


class ModelNotFound(InferenceError):
    status = 404


class NotImplementedByModel(InferenceError):
    status = 501


class ModelNotReady(InferenceError):
    status = 503


class PayloadTooLarge(InferenceError):
    status = 413


class BatchTimeout(InferenceError):
    """A batched request waited longer than the batcher's timeout (KServe's `batcher.timeout`)."""

    status = 504


class UpstreamError(InferenceError):
    """The server this model depends on (an explainer's predictor) could not be reached or failed:
    not the caller's mistake, so 502 and not 400."""

    status = 502
