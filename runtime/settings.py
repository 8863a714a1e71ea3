"""The model server's settings: one frozen object per process, from flags and KNSERVE_* variables.

Flags win over the environment; the environment (set by the local plane or a Knative Service's
`env`, for example from an InferenceService's batcher and logger) wins over the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from knserve.runtime.asgi import MAX_BODY_BYTES


@dataclass(frozen=True)
class ModelSpec:
    """A model to load: its name, where its files are (path or URI) and optionally its format."""

    name: str
    uri: str
    format: str | None = None


@dataclass(frozen=True)
class RuntimeSettings:
    host: str = "127.0.0.1"
    # Knative's contract: the container listens on $PORT (8080 when unset).
    port: int = 8080
    # The Open Inference Protocol over gRPC (knserve.runtime.grpc_server); None: REST only.
    # KServe's servers serve it on 8081; `--grpc-port` turns it on (plane_grpc_port).
    grpc_port: int | None = None
    models: tuple[ModelSpec, ...] = ()
    model_repository: str | None = None
    # KServe's multi-model config (`models.json` of the `modelconfig-{isvc}-0` ConfigMap): the
    # TrainedModels this server loads before it is ready, and where a repository load finds them.
    model_config: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES  # larger bodies get 413
    # Where a synchronous predict runs: auto (measure, see offload.py), always (thread), never.
    offload: str = "auto"
    offload_threshold_ms: float = 1.0
    # Threads per model for offloaded calls; more than a couple only helps models that release
    # the GIL (NumPy, onnxruntime, torch).
    predict_threads: int = 4
    # Dynamic batching (0 = off): the most rows a batch takes and the longest a request waits for
    # its batch to go while the model is busy (a batch goes at once when it is free; see
    # batching.py). KServe's defaults are 32 rows and 5,000 ms; a shorter window suits in-process
    # batching, which has no sidecar hop to amortise.
    max_batch_size: int = 0
    max_latency_ms: float = 10.0
    batch_timeout_s: float | None = None
    # Response cache (0 entries = off).
    cache_entries: int = 0
    cache_ttl_s: float | None = None
    # Payload logger (KServe's logger: url and mode all|request|response).
    logger_url: str | None = None
    logger_mode: str = "all"
    component: str = "predictor"
    inference_service: str = ""
    namespace: str = ""
    log_level: str = "warning"
    log_format: str = "text"  # text, or json: one object per line (knserve.runtime.logformat)
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offload not in ("auto", "always", "never"):
            raise ValueError(f"offload is {self.offload!r}, it must be auto, always or never")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port (1-65535)")
        if self.grpc_port is not None and not 0 <= self.grpc_port < 65536:
            raise ValueError(f"grpc port {self.grpc_port} is not a TCP port (1-65535)")
        if self.max_batch_size < 0:
            raise ValueError(f"max_batch_size is {self.max_batch_size}, it must be 0 (off) or more")
        if self.max_latency_ms < 0:
            raise ValueError(f"max_latency_ms is {self.max_latency_ms:g}, it must be 0 or more")
        if self.batch_timeout_s is not None and self.batch_timeout_s <= 0:
            raise ValueError(
                f"batch_timeout_s is {self.batch_timeout_s:g}, it must be more than 0 (or unset)"
            )
        if self.cache_entries < 0:
            raise ValueError(f"cache_entries is {self.cache_entries}, it must be 0 (off) or more")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log format is {self.log_format!r}, it must be text or json")
        if self.logger_mode not in ("all", "request", "response"):
            raise ValueError(
                f"logger mode is {self.logger_mode!r}, it must be all, request or response"
            )


# environment variable -> (field, parser)
_ENV = {
    "PORT": ("port", int),
    "KNSERVE_GRPC_PORT": ("grpc_port", int),
    "KNSERVE_MAX_BATCH_SIZE": ("max_batch_size", int),
    "KNSERVE_MAX_LATENCY_MS": ("max_latency_ms", float),
    "KNSERVE_BATCH_TIMEOUT_S": ("batch_timeout_s", float),
    "KNSERVE_CACHE_ENTRIES": ("cache_entries", int),
    "KNSERVE_CACHE_TTL_S": ("cache_ttl_s", float),
    "KNSERVE_LOGGER_URL": ("logger_url", str),
    "KNSERVE_LOGGER_MODE": ("logger_mode", str),
    "KNSERVE_COMPONENT": ("component", str),
    "KNSERVE_OFFLOAD": ("offload", str),
    "KNSERVE_OFFLOAD_THRESHOLD_MS": ("offload_threshold_ms", float),
    "KNSERVE_PREDICT_THREADS": ("predict_threads", int),
    "KNSERVE_LOG_LEVEL": ("log_level", str),
    "KNSERVE_LOG_FORMAT": ("log_format", str),
    "KNSERVE_MODEL_CONFIG": ("model_config", str),
    "INFERENCE_SERVICE_NAME": ("inference_service", str),
    "POD_NAMESPACE": ("namespace", str),
}


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> RuntimeSettings:
    """Settings from the environment, then `overrides` (flags) on top; None overrides are ignored."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for var, (name, parse) in _ENV.items():
        raw = env.get(var)
        if raw not in (None, ""):
            try:
                values[name] = parse(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a valid {parse.__name__}") from None
    known = {f.name for f in fields(RuntimeSettings)}
    for name, value in overrides.items():
        if name not in known:
            raise TypeError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = value
    if env.get(PORT_MAP_ENV):
        port = values.get("port", RuntimeSettings.port)
        values["port"] = plane_port(port, env, free=True) if isinstance(port, int) else port
        grpc_port = values.get("grpc_port")
        if isinstance(grpc_port, int):
            values["grpc_port"] = plane_port(grpc_port, env, free=True)
        elif plane_port(GRPC_PORT, env, free=True):
            # the container declares KServe's gRPC port (a grpc-v2 predictor's port named h2c):
            # serve gRPC there, as KServe's servers serve it on 8081 unless told otherwise
            values["grpc_port"] = plane_port(GRPC_PORT, env)
        if values.get("grpc_port") == values["port"]:
            # the declared port is gRPC's (a port named h2c): HTTP takes a free port beside it
            values["port"] = 0
        if values.get("host") not in (None, "127.0.0.1", "::1", "localhost"):
            values["host"] = "127.0.0.1"  # the local plane serves on loopback only
    return RuntimeSettings(**values)  # type: ignore[arg-type]


# KServe's gRPC port (its servers' `--grpc_port` default).
GRPC_PORT = 8081

# The local plane's port map (knserve.knative.supervisor.port_map): `DECLARED=REAL,keep=LOW-HIGH`.
PORT_MAP_ENV = "KNSERVE_PORT_MAP"


def plane_port(port: int, env: Mapping[str, str], free: bool = False) -> int:
    """The port to serve on for `port` under the local plane's port map: the container's declared
    port (KServe's `--http_port=8080`) is the replica's own port, as in a pod it would be. With
    `free`, any other fixed port is 0 (a free one), as the plane's shim maps it."""
    declared, _, rest = env.get(PORT_MAP_ENV, "").partition("=")
    real = rest.partition(",")[0]
    if declared.isdigit() and real.isdigit() and int(declared) == port:
        return int(real)
    low, _, high = rest.partition("keep=")[2].partition("-")
    if not free or (low.isdigit() and high.isdigit() and int(low) <= port <= int(high)):
        return port  # a port the kernel gave ($PORT itself): no other replica holds it
    return 0
