"""`--log-format json` (and KNSERVE_LOG_FORMAT): one JSON object per line, with the request's id,
trace and model where there is one, from the model server and the function host processes."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from net_fixtures import ServerProcess, eventually, free_port, model_server

from knserve.functions.funcyaml import new, save
from knserve.runtime.logformat import JsonFormatter, configure_logging, log_format
from knserve.runtime.propagation import enter

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
# A KServe-style custom model that logs while it predicts, as users' models do.
MODEL = """
import logging

from knserve.runtime import Model

log = logging.getLogger("iris.model")


class Logging(Model):
    def predict(self, payload, headers=None):
        log.info("predicting %d rows", len(payload["instances"]))
        return {"predictions": [0 for _ in payload["instances"]]}
"""


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("iris.model", logging.INFO, __file__, 1, message, (), None)


def test_a_json_line_has_the_records_fields_and_the_requests() -> None:
    env = {"POD_NAMESPACE": "default", "K_REVISION": "iris-00001", "POD_NAME": "iris-00001-0"}
    formatter = JsonFormatter(env)
    plain = json.loads(formatter.format(record("loaded")))
    assert set(plain) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "namespace",
        "revision",
        "replica",
    }
    assert (plain["level"], plain["logger"], plain["message"]) == ("INFO", "iris.model", "loaded")
    assert plain["timestamp"].endswith("Z") and plain["replica"] == "iris-00001-0"

    def in_request() -> dict[str, object]:
        enter(
            {"x-request-id": "r-1", "traceparent": f"00-{TRACE}-{SPAN}-01"}, "iris"
        )  # what the server does for each inference request
        line = record("predicting")
        line.__dict__["status"] = 200  # as `extra={"status": 200}` sets it
        return json.loads(formatter.format(line))

    import contextvars

    served = contextvars.copy_context().run(in_request)
    assert (served["request_id"], served["trace_id"], served["model"]) == ("r-1", TRACE, "iris")
    assert served["status"] == 200


def test_an_exception_is_one_field_of_its_line() -> None:
    try:
        raise ValueError("bad input")
    except ValueError:
        line = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter({}).format(line)
    assert "\n" not in text
    assert "ValueError: bad input" in json.loads(text)["exception"]


def test_the_format_is_the_flag_then_the_environment_then_text() -> None:
    assert log_format(None, {}) == "text"
    assert log_format(None, {"KNSERVE_LOG_FORMAT": "JSON"}) == "json"
    assert log_format("text", {"KNSERVE_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ValueError, match="KNSERVE_LOG_FORMAT is 'yaml'; write text or json"):
        log_format(None, {"KNSERVE_LOG_FORMAT": "yaml"})


def test_configure_logging_writes_json_lines_on_the_root_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        assert configure_logging("info", "json") == "json"
        logging.getLogger("knserve.test").info("hello %s", "world")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert json.loads(stream.getvalue())["message"] == "hello world"


def logging_function(folder: Path) -> Path:
    (folder / "function").mkdir(parents=True)
    (folder / "function" / "__init__.py").write_text(MODEL)
    save(folder, new("iris", "http"))
    return folder


def json_lines(text: str) -> list[dict[str, object]]:
    """The lines of a process's output that are JSON objects (prints are not)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_function_host_logs_a_models_lines_as_json_with_the_request(
    spawn: Callable[..., ServerProcess], tmp_path: Path, how: str
) -> None:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "knserve.functions.host",
        "--path",
        str(logging_function(tmp_path / "fn")),
    ]
    args += ["--port", str(port), "--model_name", "iris"]
    env = {"POD_NAMESPACE": "default", "K_REVISION": "iris-00001", "POD_NAME": "iris-00001-0"}
    if how == "flag":
        args += ["--log-format", "json"]
    else:
        env["KNSERVE_LOG_FORMAT"] = "json"
    host = spawn(args, env=env)
    host.wait_http(f"http://127.0.0.1:{port}/health/readiness")
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/iris:predict",
        json={"instances": [[1, 2], [3, 4]]},
        headers={"x-request-id": "r-42", "traceparent": f"00-{TRACE}-{SPAN}-01"},
    )
    assert response.status_code == 200, response.text

    # the line is written by another process: its log file is what can be read
    def logged() -> dict[str, object] | None:
        return next((j for j in json_lines(host.log()) if j.get("logger") == "iris.model"), None)

    line = eventually(logged, 10, lambda: f"no model line in:\n{host.log()}")
    assert line["message"] == "predicting 2 rows"
    assert (line["request_id"], line["trace_id"], line["model"]) == ("r-42", TRACE, "iris")
    assert (line["namespace"], line["revision"], line["replica"]) == (
        "default",
        "iris-00001",
        "iris-00001-0",
    )
    assert line["level"] == "INFO"


def test_text_stays_the_default(spawn: Callable[..., ServerProcess], tmp_path: Path) -> None:
    port = free_port()
    folder = logging_function(tmp_path / "fn")
    host = spawn(
        [
            sys.executable,
            "-m",
            "knserve.functions.host",
            "--path",
            str(folder),
            "--port",
            str(port),
            "--model_name",
            "iris",
        ]
    )
    host.wait_http(f"http://127.0.0.1:{port}/health/readiness")
    httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": [[1]]})

    def logged() -> str | None:
        return next((x for x in host.log().splitlines() if "predicting 1 rows" in x), None)

    line = eventually(logged, 10, lambda: f"no model line in:\n{host.log()}")
    assert " INFO iris.model: predicting 1 rows" in line and not line.startswith("{")


def test_the_model_server_writes_every_log_line_as_json(
    spawn: Callable[..., ServerProcess], sklearn_iris_dir: Path
) -> None:
    port = free_port()
    env = {"KNSERVE_LOG_FORMAT": "json", "KNSERVE_LOG_LEVEL": "info"}  # as the plane sets them
    server = model_server(spawn, "iris", sklearn_iris_dir, port, env)
    server.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    lines = json_lines(server.log())
    assert lines, server.log()
    # uvicorn's own records go through the same handler
    assert any(str(line["logger"]).startswith("uvicorn") for line in lines), server.log()
    for text in server.log().splitlines():
        assert text.startswith(("{", "knserve.runtime serving on")), text
