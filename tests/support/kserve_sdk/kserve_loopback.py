"""Run a KServe model file with KServe's own server, its HTTP server on loopback.

    python kserve_loopback.py FILE [the file's arguments]

KServe's REST server hard-codes `host="0.0.0.0"`; tests and benchmarks bind loopback only, so
uvicorn's Config is wrapped to force 127.0.0.1, and its gRPC server's `[::]` listen address is
rewritten to 127.0.0.1 (nothing else changes), then FILE runs as `python FILE …` would run it.
"""

import runpy
import sys

import uvicorn
from grpc.aio._server import Server as _GrpcServer

_Config = uvicorn.Config


class _LoopbackConfig(_Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _LoopbackConfig  # looked up at call time by kserve.protocol.rest.server

_add_insecure_port = _GrpcServer.add_insecure_port


def _loopback_port(self, address):
    # kserve.protocol.grpc.server listens on f"[::]:{port}"
    return _add_insecure_port(self, address.replace("[::]", "127.0.0.1"))


_GrpcServer.add_insecure_port = _loopback_port

if __name__ == "__main__":
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(__import__("pathlib").Path(path).resolve().parent))
    runpy.run_path(path, run_name="__main__")
