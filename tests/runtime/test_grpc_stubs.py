"""The committed gRPC stubs are what grpcio-tools generates from the committed .proto files."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("grpc_tools")


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    from knserve.runtime.grpc_v2 import generate

    written = generate.generate(tmp_path)
    assert {p.name for p in written} >= {"grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py"}
    for fresh in written:
        committed = generate.HERE / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.name} is stale: run `make grpc-stubs` and commit the result"
        )
