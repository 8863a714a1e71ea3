"""Replicas' log files read as `knserve logs` reads them: merged by time, filtered, followed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from knserve.knative.cli.replica_logs import ReplicaLog, line_time, merged, replica_files


def text_stamp(unix: float) -> str:
    """A text log line's timestamp (local time, milliseconds after a comma, as asctime)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) + f",{int(unix % 1 * 1000):03d}"


def json_stamp(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def test_both_formats_timestamps_are_read() -> None:
    now = 1_800_000_000.25
    assert line_time(f"{text_stamp(now)} INFO x: hello".encode()) == now
    assert line_time(f'{{"timestamp":"{json_stamp(now)}","level":"INFO"}}'.encode()) == now
    assert line_time(b"Traceback (most recent call last):") is None


def test_replicas_are_merged_by_time_and_lines_without_one_follow_theirs(tmp_path: Path) -> None:
    t = 1_800_000_000.0
    (tmp_path / "default_iris-00001_0.log").write_text(
        f"starting\n{text_stamp(t + 1)} INFO a: first\n{text_stamp(t + 3)} ERROR a: third\n"
        "Traceback (most recent call last):\n"
    )
    (tmp_path / "default_iris-00001_1.log").write_text(
        f'{{"timestamp":"{json_stamp(t + 2)}","message":"second"}}\n'
    )
    (tmp_path / "default_iris-00001-x_0.log").write_text("another revision's\n")
    files = replica_files(tmp_path, "default", "iris-00001")
    assert [index for index, _ in files] == [0, 1]
    logs = [ReplicaLog(f"iris-00001-{i}", path) for i, path in files]
    assert list(merged(logs)) == [
        "[iris-00001-0] starting",
        f"[iris-00001-0] {text_stamp(t + 1)} INFO a: first",
        f'[iris-00001-1] {{"timestamp":"{json_stamp(t + 2)}","message":"second"}}',
        f"[iris-00001-0] {text_stamp(t + 3)} ERROR a: third",
        "[iris-00001-0] Traceback (most recent call last):",
    ]


def test_since_and_tail(tmp_path: Path) -> None:
    t = 1_800_000_000.0
    path = tmp_path / "default_r_0.log"
    path.write_text("".join(f"{text_stamp(t + i)} INFO a: line {i}\n" for i in range(5)))
    assert [x.split(": ")[1] for x in merged([ReplicaLog("r-0", path)], since=t + 3)] == [
        "line 3",
        "line 4",
    ]
    assert [x.split(": ")[1] for x in merged([ReplicaLog("r-0", path)], tail=2)] == [
        "line 3",
        "line 4",
    ]
    assert list(merged([ReplicaLog("r-0", path)], tail=0)) == []


def test_following_reads_only_whole_new_lines_and_survives_a_truncation(tmp_path: Path) -> None:
    path = tmp_path / "default_r_0.log"
    path.write_text("one\ntw")
    log = ReplicaLog("r-0", path)
    assert list(merged([log])) == ["[r-0] one"]
    with path.open("a") as stream:
        stream.write("o\nthree\n")
    assert list(merged([log])) == ["[r-0] two", "[r-0] three"]
    assert list(merged([log])) == []
    path.write_text("new\n")  # the replica's file started again
    assert list(merged([log])) == ["[r-0] new"]
