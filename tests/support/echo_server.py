"""A revision's container for plane tests: answers with what the Knative contract gave it.

`python echo_server.py PORT [WORDS…]` serves on 127.0.0.1:PORT; `GET /` returns JSON with the
`K_*` variables, `PORT`, `GREETING`, the working folder, the argv and the pid; `GET /sleep?s=N&mark=FILE`
writes FILE on arrival and answers after N seconds (for drain and concurrency tests).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/sleep":
            query = parse_qs(url.query)
            if "mark" in query:  # tells the test the request has arrived
                with open(query["mark"][0], "w") as mark:
                    mark.write(str(os.getpid()))
            time.sleep(float(query.get("s", ["1"])[0]))
        body = json.dumps(self.answer()).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer(self) -> dict[str, object]:
        return {
            "revision": os.environ.get("K_REVISION"),
            "service": os.environ.get("K_SERVICE"),
            "configuration": os.environ.get("K_CONFIGURATION"),
            "port": os.environ.get("PORT"),
            "greeting": os.environ.get("GREETING"),
            "cwd": os.getcwd(),
            "argv": sys.argv[1:],
            "pid": os.getpid(),
            "path": self.path,
        }

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = False  # SIGTERM drains: in-flight requests finish
    import signal

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
