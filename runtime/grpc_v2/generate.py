"""Generate the Python stubs of this folder's .proto files with grpcio-tools.

`python -m knserve.runtime.grpc_v2.generate [OUT_DIR]` writes `*_pb2.py`, `*_pb2.pyi` and
`*_pb2_grpc.py` beside the .proto files (or into OUT_DIR). protoc writes the service module's
import of its messages as a top-level import; it is rewritten to a relative one so the stubs
live inside the package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
PROTOS = ("grpc_predict_v2.proto", "repository_index.proto")


def generate(out: Path = HERE) -> list[Path]:
    """Run protoc on every .proto here; returns the files written."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{HERE}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(HERE / proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    written = []
    for path in sorted(out.glob("*_pb2*.py*")):
        text = path.read_text()
        fixed = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        path.write_text(fixed)
        written.append(path)
    return written


if __name__ == "__main__":
    for written in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(written)
