"""A revision's container that burns CPU per request, for HPA tests and the benchmark.

`python cpu_burner.py` serves on 127.0.0.1:$PORT; `GET /burn?ms=N` computes for N ms of its
thread's CPU time (a bounded, real load: one request is at most that much work) and answers with
the pid; `GET /` answers at once. `BALLAST_MIB=N` holds N MiB of touched memory from the start
(for memory targets).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

BALLAST = bytearray(int(os.environ.get("BALLAST_MIB", "0")) * 1024 * 1024)
for offset in range(0, len(BALLAST), 4096):  # touch every page, so it is resident
    BALLAST[offset] = 1


def burn(seconds: float) -> int:
    """Compute for `seconds` of this thread's CPU time; the work done, so it is not optimized away."""
    done, until = 0, time.thread_time() + seconds
    while time.thread_time() < until:
        done += sum(i * i for i in range(500)) & 1
    return done


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        work = 0
        if url.path == "/burn":
            work = burn(float(parse_qs(url.query).get("ms", ["50"])[0]) / 1000)
        body = json.dumps({"pid": os.getpid(), "work": work}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
