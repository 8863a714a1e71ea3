"""Log lines as text for a terminal, or one JSON object per line for a log pipeline (ELK, Loki).

`configure_logging(level, log_format)` sets up the root logger of a knserve process: the plane
(`knserve up`), a model server (`python -m knserve.runtime`) or the function host. The format is
the `--log-format` flag, else `KNSERVE_LOG_FORMAT`, else `text`, the default, as before.

In the JSON format each record is one line with `timestamp` (RFC 3339, UTC, microseconds),
`level`, `logger` and `message`, then, where they exist:

- `request_id`, `trace_id` and `model` of the request being served (`knserve.runtime.propagation`
  keeps it in a context variable, so a model's own `logging` calls carry them too);
- `namespace`, `revision` and `replica` of the process (the environment the plane gives each
  replica: `POD_NAMESPACE`, `K_REVISION`, `POD_NAME`);
- whatever a call passes as `extra=` (the gateway's access log passes method, path, status …);
- `exception`, the formatted traceback.

Text lines are `timestamp level logger: message`, and `knserve logs` reads the timestamp of
either form.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from knserve.runtime.propagation import current

__all__ = ["FORMATS", "TEXT_FORMAT", "JsonFormatter", "configure_logging", "log_format"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ENV = "KNSERVE_LOG_FORMAT"
# What a LogRecord holds of its own; every other attribute came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_PROCESS_FIELDS = (
    ("namespace", "POD_NAMESPACE"),
    ("revision", "K_REVISION"),
    ("replica", "POD_NAME"),
)


def log_format(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The format asked for: the flag, else `KNSERVE_LOG_FORMAT`, else text. ValueError, saying
    what to write, for any other value."""
    env = os.environ if env is None else env
    value = (flag or env.get(ENV) or "text").strip().lower()
    if value not in FORMATS:
        source = "--log-format" if flag else ENV
        raise ValueError(f"{source} is {value!r}; write text or json")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if env is None else env
        self.process_fields = {key: env[var] for key, var in _PROCESS_FIELDS if env.get(var)}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        inbound = current()
        if inbound is not None:
            request_id, trace_id = inbound.request_id, inbound.trace_id
            if request_id:
                line["request_id"] = request_id
            if trace_id:
                line["trace_id"] = trace_id
            line["model"] = inbound.model
        line.update(self.process_fields)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and value is not None and value != "":
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str | int, log_format_flag: str | None = None) -> str:
    """Set the root logger's level and format (module docstring); returns the format chosen.
    Raises ValueError for a format that is neither text nor json."""
    chosen = log_format(log_format_flag)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return chosen
