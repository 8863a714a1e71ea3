"""A revision's container that insists on fixed ports, as KServe's model server does.

`python fixed_port_server.py HTTP_PORT [OTHER_PORT…]` serves HTTP on 127.0.0.1:HTTP_PORT whatever
`$PORT` says, and also listens on [::1]:OTHER_PORT (as KServe's gRPC binds 8081). Loopback, as
every server a test starts: the any-addresses a real server binds are the shim tests' part.
`GET /` answers echo_server.py's JSON plus where its sockets really are (`http`, `others`).
"""

from __future__ import annotations

import socket
import sys
from http.server import HTTPServer, ThreadingHTTPServer

from echo_server import Handler  # beside this file: on the path of a script run from here


class FixedPortHandler(Handler):
    others: list[socket.socket] = []

    def answer(self) -> dict[str, object]:
        assert isinstance(self.server, HTTPServer)
        return {
            **super().answer(),
            "http": list(self.server.socket.getsockname()[:2]),
            "others": [list(s.getsockname()[:2]) for s in self.others],
        }


def main() -> None:
    http_port, *other_ports = (int(arg) for arg in sys.argv[1:])
    for port in other_ports:
        sock = socket.socket(socket.AF_INET6)
        sock.bind(("::1", port))
        sock.listen()
        FixedPortHandler.others.append(sock)
    server = ThreadingHTTPServer(("127.0.0.1", http_port), FixedPortHandler)
    print(f"serving on {server.socket.getsockname()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
