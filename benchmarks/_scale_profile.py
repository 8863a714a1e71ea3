"""Where an idle plane's time goes: py-spy samples of its process, summed per function."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def profiling(pid: int, seconds: float, what: str, top: int = 12) -> Iterator[None]:
    """Sample `pid` with py-spy for `seconds` while the block runs; print the functions that
    were on the stack the most (inclusive), knserve's own first."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("   (--profile: py-spy is not on PATH; pip install py-spy)")
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        argv = [spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "200"]
        argv += ["-f", "raw", "-o", str(out), "--nonblocking"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            proc.wait(seconds + 30)
        if not out.exists():
            print("   (--profile: py-spy recorded nothing; it needs ptrace permission)")
            return
        inclusive: Counter[str] = Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            total += int(count)
            for frame in set(stack.split(";")):
                if "knative/" in frame or "eventing/" in frame or "runtime/" in frame:
                    inclusive[frame] += int(count)
    print(f"\nprofile of the idle plane at {what}: {total} samples py-spy judged busy (200/s)")
    for frame, count in inclusive.most_common(top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {frame}")
