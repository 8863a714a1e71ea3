"""Every template: its own tests pass as rendered; `func run` serves it; `func invoke` calls it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from function_fixtures import TEMPLATE_NAMES, knserve, start_func_run
from model_fixtures import train_sklearn_iris
from net_fixtures import model_server


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_rendered_functions_own_tests_pass(
    created_functions: dict[str, Path], template: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=created_functions[template],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def set_envs(folder: Path, **envs: str) -> None:
    spec = yaml.safe_load((folder / "func.yaml").read_text())
    spec["run"]["envs"] = [{"name": k, "value": v} for k, v in envs.items()]
    (folder / "func.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.mark.slow
def test_http_function_runs_and_answers_invoke(
    created_functions, spawn, port, functions_home
) -> None:  # type: ignore[no-untyped-def]
    folder = created_functions["http"]
    start_func_run(spawn, folder, port)
    assert httpx.get(f"http://127.0.0.1:{port}/health/liveness").json()["alive"] is True
    answer = knserve("func", "invoke", "--path", str(folder), "--data", '{"name": "Ada"}')
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"message": "Hello, Ada!"}


@pytest.mark.slow
def test_cloudevents_function_answers_events_and_refuses_plain_requests(
    created_functions, spawn, port, functions_home
) -> None:  # type: ignore[no-untyped-def]
    folder = created_functions["cloudevents"]
    start_func_run(spawn, folder, port)
    answer = knserve(
        "func", "invoke", "--path", str(folder), "--type", "demo.request", "--data", '{"n": 1}'
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.splitlines()[-1])["data"] == {
        "received": "demo.request",
        "echo": {"n": 1},
    }
    plain = httpx.post(f"http://127.0.0.1:{port}/", json={"n": 1})
    assert plain.status_code == 400 and "CloudEvents" in plain.json()["error"]


@pytest.mark.slow
def test_predictor_answers_v1_v2_and_cloudevents(
    created_functions, spawn, port, functions_home
) -> None:  # type: ignore[no-untyped-def]
    folder = created_functions["predictor"]
    start_func_run(spawn, folder, port)
    v1 = knserve(
        "func", "invoke", "--path", str(folder), "--data", '{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    )
    assert json.loads(v1.stdout) == {"predictions": [1]}
    body = '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}]}'
    v2 = json.loads(knserve("func", "invoke", "--path", str(folder), "--data", body).stdout)
    assert v2["outputs"][0]["data"] == [1]
    event = knserve(
        "func",
        "invoke",
        "--target",
        f"http://127.0.0.1:{port}/v1/models/demo-predictor:predict",
        "--format",
        "cloudevent",
        "--data",
        '{"instances": [[6.8, 2.8, 4.8, 1.4]]}',
    )
    assert "ce-type: io.kserve.inference.response" in event.stdout
    assert json.loads(event.stdout.splitlines()[-1]) == {"predictions": [1]}


@pytest.mark.slow
def test_transformer_calls_its_predictor_over_http(
    created_functions, spawn, functions_home
) -> None:  # type: ignore[no-untyped-def]
    from net_fixtures import free_port

    predictor_port, transformer_port = free_port(), free_port()
    start_func_run(spawn, created_functions["predictor"], predictor_port)
    folder = created_functions["transformer"]
    set_envs(folder, PREDICTOR_HOST=f"127.0.0.1:{predictor_port}", PREDICTOR_MODEL="demo-predictor")
    start_func_run(spawn, folder, transformer_port)
    answer = knserve(
        "func", "invoke", "--path", str(folder), "--data", '{"instances": [[68, 28, 48, 14]]}'
    )
    assert json.loads(answer.stdout) == {"predictions": ["versicolor"]}


@pytest.mark.slow
def test_explainer_explains_a_runtime_predictor(
    created_functions, spawn, tmp_path, functions_home
) -> None:  # type: ignore[no-untyped-def]
    from net_fixtures import free_port

    model, x = train_sklearn_iris(tmp_path / "iris")
    predictor_port, explainer_port = free_port(), free_port()
    predictor = model_server(spawn, "iris", tmp_path / "iris", predictor_port)
    predictor.wait_http(f"http://127.0.0.1:{predictor_port}/v2/health/ready")
    folder = created_functions["explainer"]
    set_envs(
        folder,
        PREDICTOR_HOST=f"127.0.0.1:{predictor_port}",
        PREDICTOR_MODEL="iris",
        PREDICTOR_PROTOCOL="v2",
    )
    start_func_run(spawn, folder, explainer_port)
    url = f"http://127.0.0.1:{explainer_port}/v1/models/demo-explainer:explain"
    answer = knserve(
        "func", "invoke", "--target", url, "--data", json.dumps({"instances": [x[0].tolist()]})
    )
    assert answer.returncode == 0, answer.stderr
    explanation = json.loads(answer.stdout)
    import numpy as np

    total = (
        np.asarray(explanation["data"]["shap_values"]).sum(axis=1)
        + explanation["data"]["expected_value"]
    )
    np.testing.assert_allclose(total, model.predict_proba(x[:1]), atol=1e-5)


@pytest.mark.slow
def test_a_handler_that_does_not_import_answers_probes_honestly(
    tmp_path, spawn, port, functions_home
) -> None:  # type: ignore[no-untyped-def]
    from knserve.functions.create import create_function

    folder = create_function("broken", "http", tmp_path / "broken")
    (folder / "function" / "func.py").write_text("import no_such_module_here\n")
    proc = start_unready(spawn, folder, port)
    ready = httpx.get(f"http://127.0.0.1:{port}/health/readiness")
    assert ready.status_code == 503 and "no_such_module_here" in ready.json()["reason"]
    assert httpx.get(f"http://127.0.0.1:{port}/health/liveness").status_code == 200
    assert "no_such_module_here" in proc.log()


def start_unready(spawn, folder: Path, port: int):  # type: ignore[no-untyped-def]
    proc = spawn(
        [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "func",
            "run",
            "--path",
            str(folder),
            "--port",
            str(port),
        ]
    )
    proc.wait_http(f"http://127.0.0.1:{port}/health/liveness", timeout=120)
    return proc


def test_describe_shows_the_function(created_functions: dict[str, Path]) -> None:
    result = knserve("func", "describe", "--path", str(created_functions["transformer"]))
    assert result.returncode == 0
    assert "Name:         demo-transformer" in result.stdout
    assert "Env:          PREDICTOR_HOST=" in result.stdout
