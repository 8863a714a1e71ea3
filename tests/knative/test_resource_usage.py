"""Replica CPU and memory from /proc (knative/autoscaler/resource_usage.py), on real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from knserve.knative.apiserver.quantity import parse_quantity
from knserve.knative.autoscaler.resource_usage import (
    ONE_CORE,
    ResourceSampler,
    _scanned_tree_usage,
    process_tree_usage,
    requests,
)

# A parent that starts a child burning CPU: the replica's usage is the whole tree's.
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: sum(range(1000))"])
print(child.pid, flush=True)
ballast = bytearray(40 * 1024 * 1024)
for i in range(0, len(ballast), 4096): ballast[i] = 1
print("ready", flush=True)
time.sleep(120)
"""


def test_kubernetes_quantities() -> None:
    assert parse_quantity("500m") == 0.5
    assert parse_quantity("2") == 2
    assert parse_quantity("1.5Gi") == 1.5 * 2**30
    assert parse_quantity("512Mi") == 512 * 2**20
    assert parse_quantity("129e6") == 129e6
    assert parse_quantity("1k") == 1000
    with pytest.raises(ValueError, match="use e.g. 500m, 2, 512Mi or 1Gi"):
        parse_quantity("1 core")


def test_requests_default_to_limits_and_cpu_to_one_core() -> None:
    assert requests({}) == (ONE_CORE, None)
    assert requests({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}) == (2000, 2**30)
    both = {"resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "250m", "memory": "64Mi"}}}
    assert requests(both) == (250, 64 * 2**20)


def test_a_replicas_process_tree_is_sampled_for_cpu_and_memory() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"
        sampler = ResourceSampler()
        container = {"resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}
        first = sampler.sample([(parent.pid, True), (None, False)], container, time.monotonic())
        # one sample: memory is known, CPU is not (a rate needs two); the second is Pending
        assert first["cpu"][0].usage is None and first["cpu"][0].request == 500
        assert first["memory"][0].usage is not None and first["memory"][0].usage > 40 * 2**20
        assert first["memory"][0].request == 256 * 2**20
        assert not first["cpu"][1].started and first["cpu"][1].usage is None
        time.sleep(1.0)  # a CPU rate is measured over an interval
        second = sampler.sample([(parent.pid, True)], container, time.monotonic())
        # the busy child counts toward its parent's replica (a container's cgroup holds both)
        assert second["cpu"][0].usage is not None and second["cpu"][0].usage > 100
        assert second["cpu"][0].ready
        # a replica failing readiness now is unready, for CPU (its sample is left out)
        third = sampler.sample([(parent.pid, False)], container, time.monotonic() + 1)
        assert not third["cpu"][0].ready
    finally:
        for pid in (child, parent.pid):  # only the processes this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)


def test_a_tree_walked_down_its_children_is_the_tree_a_scan_of_proc_finds() -> None:
    """The walk reads only the replicas' processes (cheap with many revisions); it must count
    what the scan of every process counts: the child's memory with its parent's, gone roots out."""
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    try:
        assert parent.stdout.readline().strip() == "ready"
        walked = process_tree_usage([parent.pid, gone.pid])
        scanned = _scanned_tree_usage([parent.pid, gone.pid])
        assert set(walked) == set(scanned) == {parent.pid}
        alone = process_tree_usage([child])[child][1]
        # the parent holds the 40 MiB ballast, the child its own interpreter: both are counted
        assert walked[parent.pid][1] > 40 * 2**20 + alone * 0.8
        assert abs(walked[parent.pid][1] - scanned[parent.pid][1]) < 8 * 2**20
    finally:
        for pid in (child, parent.pid):  # only the processes this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)
