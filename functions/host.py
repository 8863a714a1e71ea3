"""The process that serves a function: `python -m knserve.functions.host --path DIR`.

It imports the function's `function` package and serves it on $PORT (Knative's contract) with
Knative func's probes at /health/liveness and /health/readiness:

- a package exporting `new()` is a func-style function: `handle(scope, receive, send)` (plain
  ASGI) when func.yaml says `invoke: http`, or `handle(event)` with a decoded CloudEvent when it
  says `invoke: cloudevent`; `start(cfg)`, `stop()`, `alive()` and `ready()` are optional;
- a package exporting a `knserve.runtime.Model` subclass (the predictor, transformer and explainer
  templates) is served by knserve.runtime, with V1, V2 and CloudEvents.

A handler that does not import, or whose `start` raises, does not kill the process: liveness
answers 200, readiness answers 503 with the error (which is also logged), so a supervisor sees
the truth instead of a crash loop.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from knserve.functions import funcyaml
from knserve.runtime.asgi import Receive, Scope, Send, read_body, send_json
from knserve.runtime.errors import PayloadTooLarge
from knserve.runtime.logformat import configure_logging
from knserve.runtime.propagation import enter, propagation_headers

log = logging.getLogger("knserve.functions.host")

PROBES = ("/health/liveness", "/health/readiness")


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    return await result if inspect.isawaitable(result) else result


def _probe(fn: Callable[[], Any] | None) -> tuple[bool, str]:
    if fn is None:
        return True, "ok"
    result = fn()
    if isinstance(result, tuple):
        return bool(result[0]), str(result[1]) if len(result) > 1 else ""
    return bool(result), ""


class FunctionHost:
    """ASGI app around one func-style function (or around the runtime app for a Model)."""

    def __init__(self, folder: Path, model_name: str | None = None) -> None:
        self.folder = folder
        self.model_name = model_name  # KServe's --model_name: the name callers use
        self.error: str | None = None
        self.instance: Any = None
        self.runtime_app: Any = None
        self.invoke = "http"
        try:
            spec = funcyaml.load(folder)
            self.name = spec.get("name", folder.name)
            self.invoke = spec.get("invoke", "http")
            self._import()
        except Exception as exc:  # the probes report it; the process stays up
            self.error = f"{type(exc).__name__}: {exc}"
            self.name = getattr(self, "name", folder.name)
            log.error(
                "function %s cannot be served: %s\n%s", folder, self.error, traceback.format_exc()
            )

    def _import(self) -> None:
        sys.path.insert(0, str(self.folder))
        module = importlib.import_module("function")
        if callable(getattr(module, "new", None)):
            self.instance = module.new()
            return
        from knserve.runtime import Model, create_app

        classes = [
            v
            for v in vars(module).values()
            if inspect.isclass(v) and issubclass(v, Model) and v is not Model
        ]
        if len(classes) != 1:
            raise TypeError(
                "the function package must export new() (a func-style function) or exactly one "
                f"knserve.runtime.Model subclass; found {len(classes)} Model classes"
            )
        self.runtime_app = create_app(models=[classes[0](self.model_name or self.name)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in PROBES:
            await self._probe(path, send)
        elif self.error is not None:
            await send_json(
                send, 503, {"error": f"function {self.name} is not ready: {self.error}"}
            )
        elif self.runtime_app is not None:
            await self.runtime_app(scope, receive, send)
            return
        # The request's id and trace, for the function's own calls and log lines.
        enter(
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            self.name,
        )
        if self.invoke == "cloudevent":
            await self._cloudevent(scope, receive, send)
        else:
            await self.instance.handle(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        if self.error is not None:
            return
        try:
            if self.runtime_app is not None:
                await self.runtime_app.startup(wait=True)
                failed = [m for m in self.runtime_app.repository.index() if m["state"] != "READY"]
                if failed:
                    self.error = f"model failed to load: {failed[0].get('reason', '')}"
            elif hasattr(self.instance, "start"):
                await _call(self.instance.start, dict(os.environ))
        except Exception as exc:
            self.error = f"start failed: {type(exc).__name__}: {exc}"
            log.error("function %s: %s\n%s", self.name, self.error, traceback.format_exc())

    async def _stop(self) -> None:
        try:
            if self.runtime_app is not None:
                await self.runtime_app.shutdown()
            elif self.instance is not None and hasattr(self.instance, "stop"):
                await _call(self.instance.stop)
        except Exception:
            log.exception("function %s: stop failed", self.name)

    async def _probe(self, path: str, send: Send) -> None:
        if path == PROBES[0]:
            ok, reason = _probe(getattr(self.instance, "alive", None))
            await send_json(send, 200 if ok else 503, {"alive": ok, "reason": reason})
            return
        if self.error is not None:
            await send_json(send, 503, {"ready": False, "reason": self.error})
            return
        if self.runtime_app is not None:
            ok, reason = self.runtime_app.repository.all_ready(), "models loaded"
        else:
            ok, reason = _probe(getattr(self.instance, "ready", None))
        await send_json(send, 200 if ok else 503, {"ready": ok, "reason": reason})

    async def _cloudevent(self, scope: Scope, receive: Receive, send: Send) -> None:
        from knserve.runtime.protocols.cloudevents_sdk import (
            GenericException,
            from_http,
            to_binary,
            to_structured,
        )

        try:
            body = await read_body(receive)
        except PayloadTooLarge as exc:
            await send_json(send, exc.status, {"error": exc.message})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            event = from_http(headers, body)
        except GenericException as exc:
            await send_json(send, 400, {"error": f"this function takes CloudEvents: {exc}"})
            return
        answer = await _call(self.instance.handle, event)
        if answer is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        # The reply continues the request's trace (CloudEvents' distributed-tracing extension).
        for name, value in propagation_headers().items():
            if name in ("traceparent", "tracestate") and answer.get(name) is None:
                answer[name] = value
        mode = getattr(self.instance, "response_mode", "structured")
        out_headers, data = (to_binary if mode == "binary" else to_structured)(answer)
        pairs = [(k.lower().encode(), str(v).encode()) for k, v in out_headers.items()]
        if not any(k == b"content-type" for k, _ in pairs):
            pairs.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": 200, "headers": pairs})
        await send(
            {
                "type": "http.response.body",
                "body": data if isinstance(data, bytes) else data.encode(),
            }
        )


def _made(argv: Sequence[str] | None) -> tuple[Callable[[int], None], int]:
    """The function's server made (its arguments read, logging set, the function imported, the
    server configured) but not started: call it with the port; and the port it is given."""
    parser = argparse.ArgumentParser(prog="python -m knserve.functions.host")
    parser.add_argument("--path", default=".", type=Path)
    parser.add_argument("--port", "--http_port", "--http-port", dest="port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    # KServe's --model_name: in an InferenceService a transformer or explainer answers under the
    # InferenceService's name. Its other flags (--predictor_host …) are also in the environment,
    # where the function reads them, so they are accepted and ignored.
    parser.add_argument("--model_name", "--model-name", dest="model_name")
    parser.add_argument("--log-format", dest="log_format", choices=["text", "json"])
    args, _unknown = parser.parse_known_args(argv)
    try:
        chosen = configure_logging(os.environ.get("KNSERVE_LOG_LEVEL", "INFO"), args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    import uvicorn

    app = FunctionHost(args.path.resolve(), args.model_name)
    config = uvicorn.Config(
        app,
        host=args.host,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None if chosen == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    config.load()
    server = uvicorn.Server(config)

    def start(port: int) -> None:
        config.port = port
        print(f"function {app.name} serving on http://{args.host}:{port}", flush=True)
        server.run()
        if not server.started:
            sys.exit(3)  # uvicorn's status when the server could not start

    return start, args.port


def preload(argv: Sequence[str]) -> Callable[[], None]:
    """For a warm template (knserve.knative.supervisor.zygote): the function imported and its
    server made, now; what starts it in each replica forked later, on the replica's `$PORT`."""
    start, port = _made(argv)
    return lambda: start(port or int(os.environ.get("PORT", "8080")))


def main(argv: list[str] | None = None) -> None:
    start, port = _made(argv)
    start(port or int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
