"""A revision's container for degradation tests: one replica of a revision answers 500.

`python flaky_server.py PORT STATE_DIR` serves on 127.0.0.1:PORT. The first replica to start
claims `STATE_DIR/bad` (an exclusive create, so exactly one does) and answers every request with
500 until `STATE_DIR/healed` exists; the others answer 200. Every answer is JSON with the pid and
whether the replica is the bad one. `/sleep?s=N` answers after N seconds (a slow model);
a POST's body is read first, as a model reads its input. `/healthz` answers 503 once
`STATE_DIR/sick-PID` exists for its pid, 200 before (for readiness and liveness probes).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

STATE = Path(sys.argv[2])


def _claim() -> bool:
    try:
        fd = os.open(STATE / "bad", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


BAD = _claim()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/healthz":
            sick = (STATE / f"sick-{os.getpid()}").exists()
            self.send_response(503 if sick else 200)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if url.path == "/sleep":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        failing = BAD and not (STATE / "healed").exists()
        body = json.dumps({"pid": os.getpid(), "bad": BAD}).encode()
        self.send_response(500 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
