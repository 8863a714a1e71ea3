"""A revision's `env` reaches its process when the replica is forked from the warm zygote too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from net_fixtures import free_port
from plane_fixtures import LocalPlane, apply

from knserve.knative.supervisor.launcher import ForkedProcess, Launcher
from knserve.knative.supervisor.zygote import exec_reason, python_path

TRANSFORMS = """
from sklearn.base import BaseEstimator, TransformerMixin


class Centimetres(BaseEstimator, TransformerMixin):
    '''A transformer of the user's own: it lives only in their library folder.'''

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x * 10.0
"""

TRAIN = """
import joblib, sys
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from irislib.transforms import Centimetres

x, y = load_iris(return_X_y=True)
joblib.dump(make_pipeline(Centimetres(), LogisticRegression(max_iter=1000)).fit(x, y), sys.argv[1])
"""

THREADS = """
import numpy  # loads OpenBLAS, which sizes its thread pool from the environment once, now
import threadpoolctl

from knserve.runtime import Model


class Threads(Model):
    def predict(self, payload, headers=None):
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["internal_api"] == "openblas"]
"""


def test_python_path_is_the_working_folder_then_pythonpath_made_absolute_then_the_interpreters(
    tmp_path: Path,
) -> None:
    (tmp_path / "lib").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lib", "", "/nonexistent", "lib"])}
    shown = subprocess.run(
        [sys.executable, "-m", "site"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    real = [
        line.strip().strip("',")
        for line in shown.split("sys.path = [", 1)[1].split("]")[0].splitlines()
    ]
    real = [p for p in real if p]
    interpreter = [p for p in sys.path if p.startswith(sys.base_prefix) or "site-packages" in p]
    ours = python_path(str(tmp_path), env["PYTHONPATH"], interpreter)
    assert ours[:3] == real[:3] == [str(tmp_path), str(tmp_path / "lib"), "/nonexistent"]


def test_a_fork_is_declined_when_a_start_time_variable_differs_or_a_module_would_be_shadowed(
    tmp_path: Path,
) -> None:
    own = {"OMP_NUM_THREADS": "2", "HOME": "/root"}
    assert exec_reason({**own, "HOME": "/tmp", "GREETING": "hi"}, own, [], {"json"}) is None
    assert "OMP_NUM_THREADS" in str(exec_reason({"OMP_NUM_THREADS": "1"}, own, [], {"json"}))
    assert "PYTHONHASHSEED" in str(exec_reason({**own, "PYTHONHASHSEED": "0"}, own, [], set()))
    assert exec_reason({**own, "PYTHONPATH": str(tmp_path)}, own, [], set()) is None
    # a value the zygote's own imports set is in effect there: the same value forks, another not
    after = {**own, "KMP_DUPLICATE_LIB_OK": "True"}
    assert exec_reason(after, own, [], set(), preloaded=after) is None
    assert exec_reason(own, own, [], set(), preloaded=after) is None
    wrong = {**own, "KMP_DUPLICATE_LIB_OK": "False"}
    assert "KMP_DUPLICATE_LIB_OK" in str(exec_reason(wrong, own, [], set(), preloaded=after))
    assert "KMP_DUPLICATE_LIB_OK" in str(exec_reason(after, own, [], set()))
    (tmp_path / "mine.py").write_text("")
    (tmp_path / "README.json").write_text("")
    assert exec_reason(own, own, [str(tmp_path)], {"json", "os"}) is None
    (tmp_path / "json").mkdir()
    assert "json" in str(exec_reason(own, own, [str(tmp_path)], {"json", "os"}))


@pytest.mark.slow
async def test_a_thread_count_set_in_env_reaches_the_replicas_blas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenBLAS reads OMP_NUM_THREADS once, when NumPy loads it: a replica forked from a zygote that
    loaded it with another value would silently run with the zygote's count."""
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS"):  # these win over OMP_NUM_THREADS
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    (tmp_path / "threads").mkdir()
    (tmp_path / "threads" / "model.py").write_text(THREADS)
    launcher = Launcher(tmp_path / "run")
    launcher.warm_up()
    port = free_port()
    env = {**os.environ, "PORT": str(port), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "knserve.runtime",
        "--model_name",
        "threads",
        "--model_dir",
        str(tmp_path / "threads"),
    ]
    process = await launcher.spawn(argv, env, None, tmp_path / "replica.log")
    try:
        assert not isinstance(process, ForkedProcess)
        async with httpx.AsyncClient() as client:
            answer = await first_answer(
                client, f"http://127.0.0.1:{port}/v1/models/threads:predict"
            )
        assert answer.json() == {"predictions": [1]}, (tmp_path / "replica.log").read_text()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await launcher.close()


async def first_answer(
    client: httpx.AsyncClient, url: str, timeout: float = 60.0
) -> httpx.Response:
    """The first answer of a server that is starting in another process (its port is the only
    signal it gives)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await client.post(url, json={"instances": []})
        except httpx.TransportError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.01)


@pytest.mark.slow
def test_a_pickled_pipeline_whose_class_is_only_on_the_revisions_pythonpath_is_served_forked(
    plane: LocalPlane, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    (library / "irislib").mkdir(parents=True)
    (library / "irislib" / "__init__.py").write_text("")
    (library / "irislib" / "transforms.py").write_text(TRANSFORMS)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TRAIN), str(model_dir / "model.joblib")],
        env={**os.environ, "PYTHONPATH": str(library)},
        check=True,
        timeout=120,
    )
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "pipeline", "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": "kserve/sklearnserver",
                            "args": ["--model_name=pipeline", f"--model_dir={model_dir}"],
                            "env": [{"name": "PYTHONPATH", "value": str(library)}],
                            "readinessProbe": {"httpGet": {"path": "/v2/health/ready"}},
                        }
                    ]
                }
            }
        },
    }
    apply(plane, tmp_path, service)
    plane.wait_ready("services", "pipeline", timeout=90)
    answer = plane.call(
        "pipeline.default.localhost",
        "/v1/models/pipeline:predict",
        "POST",
        json={"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [1, 0]}

    # and it was the zygote that served it, not the exec'd fallback
    (replica,) = re.findall(r"revision default/pipeline-00001 replica \d+: pid (\d+)", plane.log())
    assert "knserve.knative.supervisor.zygote" in cmdline(parent(int(replica))), plane.log()[-3000:]


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
