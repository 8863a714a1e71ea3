"""Functions created from every template once per test session, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knserve.functions.create import create_function

TEMPLATE_NAMES = ("http", "cloudevents", "predictor", "transformer", "explainer")
# Templates whose own tests need the environment `func build` gives them (alibi needs NumPy < 2,
# knserve's has 2): tests/functions/test_anchors_explainer.py renders, builds, runs and invokes them.
OWN_ENVIRONMENT_TEMPLATES = ("anchors-explainer",)


def knserve(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the knserve CLI in a subprocess (as a user would) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "knserve.knative.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def functions_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built function environments go to a session folder, not the user's cache."""
    home = tmp_path_factory.mktemp("functions-home")
    previous = os.environ.get("KNSERVE_FUNCTIONS_HOME")
    os.environ["KNSERVE_FUNCTIONS_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("KNSERVE_FUNCTIONS_HOME", None)
    else:
        os.environ["KNSERVE_FUNCTIONS_HOME"] = previous


@pytest.fixture(scope="session")
def created_functions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One function per template, rendered once (the predictor trains its example model)."""
    root = tmp_path_factory.mktemp("functions")
    return {t: create_function(f"demo-{t}", t, root / t) for t in TEMPLATE_NAMES}


def start_func_run(spawn: Callable[..., Any], folder: Path, port: int, *args: str) -> Any:
    """`knserve func run` serving `folder` on `port` (a `spawn`ed process), once it is ready."""
    cli = [sys.executable, "-m", "knserve.knative.cli"]
    proc = spawn([*cli, "func", "run", "--path", str(folder), "--port", str(port), *args])
    proc.wait_http(f"http://127.0.0.1:{port}/health/readiness", timeout=120)
    return proc
