"""A stand-in for KServe's graph sample image `iamlovingit/bgtest` (docs/samples/graph/bgtest):
it answers POST /switch, /splitter, /single, /ensemble and /v1/models/$target:predict with the
request's `instances` (name, intval, strval) and `"from": $target`, as that Go program does."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = os.environ.get("target", "")  # noqa: SIM112 - the sample image's own variable
PATHS = {"/splitter", "/switch", "/single", "/ensemble", f"/v1/models/{TARGET}:predict"}
FIELDS = {"name": "", "intval": 0, "strval": ""}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the plane's readiness probe
        self._send(200 if self.path == "/" else 404, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path not in PATHS:
            self._send(404, b"404 page not found")
            return
        try:
            request = json.loads(body)
        except ValueError:
            request = {}
        instances = [
            {key: item.get(key, default) for key, default in FIELDS.items()}
            for item in request.get("instances") or []
            if isinstance(item, dict)
        ]
        self._send(200, json.dumps({"from": TARGET, "instances": instances}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT") or 8080)), Handler).serve_forever()
