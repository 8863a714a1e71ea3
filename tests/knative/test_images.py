"""What a revision's container runs as a process: $(VAR) expansion and image resolution."""

from __future__ import annotations

import sys

import pytest

from knserve.functions.deploy import service_for
from knserve.functions.errors import FunctionError
from knserve.knative.supervisor.images import ImageError, expand, image_name, resolve
from knserve.knative.supervisor.replicas import restart_delay

ENV = {"PORT": "8080", "NAME": "iris"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("$(PORT)", "8080"),
        ("--port=$(PORT) --model=$(NAME)", "--port=8080 --model=iris"),
        ("$$(PORT)", "$(PORT)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$PORT", "$PORT"),
        ("$$", "$"),
        ("$(PORT", "$(PORT"),
    ],
)
def test_var_expansion_follows_kubernetes(given: str, expected: str) -> None:
    assert expand(given, ENV) == expected


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("kserve/sklearnserver", "kserve/sklearnserver"),
        ("kserve/sklearnserver:v0.14.0", "kserve/sklearnserver"),
        ("docker.io/kserve/xgbserver:latest", "kserve/xgbserver"),
        ("localhost:5000/kserve/lgbserver@sha256:abc", "kserve/lgbserver"),
        ("knserve/runtime", "knserve/runtime"),
        ("python:3.11", "python"),
        ("ghcr.io/org/team/app:1", "team/app"),
    ],
)
def test_image_names_drop_registry_tag_and_digest(image: str, name: str) -> None:
    assert image_name(image) == name


def test_a_command_runs_as_given_after_expansion() -> None:
    argv, cwd = resolve(
        {"command": ["serve", "$(PORT)"], "args": ["--name", "$(NAME)"], "workingDir": "/srv"}, ENV
    )
    assert argv == ["serve", "8080", "--name", "iris"]
    assert str(cwd) == "/srv"


def test_kserve_model_server_images_run_the_knserve_runtime_with_their_args() -> None:
    argv, cwd = resolve(
        {
            "image": "kserve/sklearnserver:v0.14",
            "args": ["--model_name=iris", "--http_port=$(PORT)"],
        },
        ENV,
    )
    assert argv == [
        sys.executable,
        "-m",
        "knserve.runtime",
        "--model_format=sklearn",  # a single-framework server loads only its framework
        "--model_name=iris",
        "--http_port=8080",
    ]
    assert cwd is None


@pytest.mark.parametrize(
    ("image", "args", "expected"),
    [
        ("kserve/xgbserver:v0.21.0", [], ["--model_format=xgboost"]),
        ("docker.io/kserve/lgbserver:v0.21.0", [], ["--model_format=lightgbm"]),
        ("kserve/sklearnserver", ["--model_format=custom"], ["--model_format=custom"]),
        ("kserve/predictiveserver:v0.21.0", ["--framework=xgboost"], ["--framework=xgboost"]),
        ("knserve/runtime:latest", [], []),
    ],
)
def test_a_single_framework_image_serves_only_its_framework(
    image: str, args: list[str], expected: list[str]
) -> None:
    argv, _ = resolve({"image": image, "args": args}, ENV)
    assert argv[3:] == expected


def test_an_image_that_cannot_run_here_says_what_to_use() -> None:
    with pytest.raises(ImageError, match="give the container a command"):
        resolve({"image": "nginx:1.27"}, ENV)


def test_restart_back_off_doubles_up_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert restart_delay(100) == 30.0


def test_a_function_becomes_a_service_with_its_envs_scale_and_readiness() -> None:
    spec = {
        "name": "iris",
        "image": "knserve.local/iris@sha256:abc",
        "run": {"envs": [{"name": "A", "value": "1"}]},
        "deploy": {
            "namespace": "ml",
            "annotations": {"team": "x"},
            "options": {"scale": {"min": 1, "max": 3, "target": 10}},
            "healthEndpoints": {"readiness": "/health/readiness"},
        },
    }
    svc = service_for(spec)
    assert svc["metadata"]["namespace"] == "ml"
    template = svc["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "team": "x",
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "3",
        "autoscaling.knative.dev/target": "10",
    }
    assert template["spec"]["containers"] == [
        {
            "image": "knserve.local/iris@sha256:abc",
            "env": [{"name": "A", "value": "1"}],
            "readinessProbe": {"httpGet": {"path": "/health/readiness"}},
        }
    ]
    assert service_for(spec, "other")["metadata"]["namespace"] == "other"
    with pytest.raises(FunctionError, match="knserve func build"):
        service_for({"name": "iris"})
