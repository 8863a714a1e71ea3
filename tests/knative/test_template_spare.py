"""A revision's template keeps its next replica forked ahead (knserve.knative.supervisor.zygote):
the replica asked for is that spare, already leading its own group, and serves the model the
template loaded; the template then forks another spare once idle."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from net_fixtures import free_port
from template_fixtures import children

from knserve.knative.supervisor.launcher import Launcher

pytestmark = pytest.mark.slow

KEY = ("default", "iris-00001")


async def until(probe: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `probe()` (state of other processes: nothing to await) until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not true within {timeout}s: {probe}")
        await asyncio.sleep(0.02)


async def predict(port: int) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(3000):
            try:
                return await client.post(
                    f"http://127.0.0.1:{port}/v1/models/iris:predict",
                    json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
                )
            except httpx.TransportError:
                await asyncio.sleep(0.01)  # not listening yet: a process we do not control
    pytest.fail(f"nothing answered on port {port}")


async def test_the_replica_asked_for_is_the_spare_the_template_forked_ahead(
    tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    launcher = Launcher(tmp_path / "run")
    launcher.warm_up()
    argv = [sys.executable, "-m", "knserve.runtime", "--model_name", "iris"]
    argv += ["--model_dir", str(sklearn_iris_dir)]
    try:
        env = {**os.environ, "PORT": str(free_port())}
        first = await launcher.spawn(argv, env, tmp_path, tmp_path / "r0.log", template=KEY)
        await until(lambda: KEY in launcher.templates.usage())
        template = launcher.templates.usage()[KEY][0]
        assert first.pid not in children(template)  # the first came from the zygote
        await until(lambda: len(children(template)) == 1)  # the spare, once the template is idle
        (spare,) = children(template)
        assert os.getpgid(spare) == spare  # it leads its group before anyone asks for it

        port = free_port()
        env = {**os.environ, "PORT": str(port)}
        second = await launcher.spawn(argv, env, tmp_path, tmp_path / "r1.log", template=KEY)
        assert second.pid == spare
        answer = await predict(port)
        assert answer.status_code == 200 and answer.json() == {"predictions": [1]}
        # and another spare is forked once the template has been idle a while
        await until(lambda: len(children(template) - {spare}) == 1)

        os.killpg(second.pid, 15)
        assert await second.wait() in (0, -15)
        os.killpg(first.pid, 15)
        await first.wait()
    finally:
        await launcher.close()
