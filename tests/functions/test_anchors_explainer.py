"""The anchors explainer function: built in its own environment (alibi, NumPy < 2), run as an
InferenceService's explainer container against a real runtime predictor, and answering what alibi
itself computes on the same model with the same seed and fit data.

The environment is built once per session (about a minute: alibi brings spacy, transformers and
scikit-image) into the session's functions home and shared by the tests here; the other tests of
the session build elsewhere in the same home, keyed by digest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import yaml
from model_fixtures import train_sklearn_iris
from net_fixtures import free_port, model_server

from knserve.functions import funcyaml
from knserve.functions.build import BuildResult, build_function, dependencies
from knserve.functions.create import create_function
from knserve.functions.images import command_for_image

# The first test to ask for the environment pays for its install (about 60 s here, more on a slow
# mirror), which pytest-timeout counts against that test.
BUILD_TIMEOUT = 240

# alibi's own computation, run with the function environment's Python: the test's has NumPy 2
# and no alibi. It fits a fresh explainer on the same rows with the same seed for each instance.
REFERENCE = """
import json, sys
import joblib, numpy as np
from alibi.explainers import AnchorTabular

model_path, folder, instances = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = json.load(open(f"{folder}/anchors.json"))
train = np.load(f"{folder}/train.npy")
model = joblib.load(model_path)
answers = []
for instance in instances:
    explainer = AnchorTabular(model.predict, config["feature_names"], seed=config["seed"]).fit(train)
    explanation = explainer.explain(np.asarray(instance), threshold=config["threshold"])
    answers.append(json.loads(explanation.to_json()))
print(json.dumps(answers))
"""


def test_the_template_renders_a_valid_function_whose_environment_pins_numpy_below_2(
    tmp_path: Path,
) -> None:
    folder = create_function("my-anchors", "anchors-explainer", tmp_path / "my-anchors")
    spec = yaml.safe_load((folder / "func.yaml").read_text())
    jsonschema.Draft4Validator(json.loads(funcyaml.SCHEMA_PATH.read_text())).validate(spec)
    assert {e["name"]: e["value"] for e in spec["run"]["envs"]}["PREDICTOR_PROTOCOL"] == "v1"
    assert {"alibi==0.9.6", "numpy<2", "click"} <= set(dependencies(folder))
    config = json.loads((folder / "anchors.json").read_text())
    assert np.load(folder / "train.npy").shape == (150, len(config["feature_names"]))
    assert "{{name}}" not in (folder / "function" / "func.py").read_text()


@pytest.fixture(scope="session")
def anchors_function(
    functions_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildResult]:
    folder = create_function(
        "demo-anchors", "anchors-explainer", tmp_path_factory.mktemp("anchors") / "demo-anchors"
    )
    return folder, build_function(folder)


def env_python(build: BuildResult) -> Path:
    return build.env / "venv" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_environment_has_numpy_1_over_knserves_numpy_2(
    anchors_function: tuple[Path, BuildResult],
) -> None:
    _, build = anchors_function
    probe = (
        "import numpy, sklearn, scipy, pandas, alibi, knserve.runtime.explainers;"
        "print(numpy.__version__, numpy.__file__)"
    )
    result = subprocess.run(
        [str(env_python(build)), "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    version, location = result.stdout.split()
    assert version.startswith("1.") and location.startswith(str(build.env))
    # pip in the function's environment sees the base's NumPy 2 and must not uninstall it.
    base = subprocess.run(
        [sys.executable, "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert base.stdout.startswith("2."), "building the function left knserve's NumPy alone"


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_rendered_anchors_explainers_own_tests_pass_in_its_environment(
    anchors_function: tuple[Path, BuildResult],
) -> None:
    folder, build = anchors_function
    result = subprocess.run(
        [str(env_python(build)), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_explainer_container_answers_what_alibi_computes(
    anchors_function: tuple[Path, BuildResult], spawn, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder, build = anchors_function
    _, x = train_sklearn_iris(tmp_path / "iris")
    predictor_port, explainer_port = free_port(), free_port()
    predictor = model_server(spawn, "iris", tmp_path / "iris", predictor_port)
    predictor.wait_http(f"http://127.0.0.1:{predictor_port}/v2/health/ready")
    # As an InferenceService's spec.explainer.containers runs it: KServe's flags and PREDICTOR_HOST.
    found = command_for_image(build.image)
    assert found is not None
    argv, cwd = found
    predictor_host = f"127.0.0.1:{predictor_port}"
    explainer = spawn(
        [
            *argv,
            "--model_name",
            "iris",
            "--predictor_host",
            predictor_host,
            "--http_port",
            str(explainer_port),
        ],
        env={"PREDICTOR_HOST": predictor_host},
        cwd=cwd,
    )
    explainer.wait_http(f"http://127.0.0.1:{explainer_port}/health/readiness", timeout=120)

    url = f"http://127.0.0.1:{explainer_port}/v1/models/iris:explain"
    instances = [x[0].tolist(), x[75].tolist(), x[120].tolist()]  # one of each species
    answers = []
    with httpx.Client(timeout=60) as client:
        for instance in instances:
            response = client.post(url, json={"instances": [instance]})
            assert response.status_code == 200, response.text
            answers.append(response.json())

        reference = subprocess.run(
            [
                str(env_python(build)),
                "-c",
                REFERENCE,
                str(tmp_path / "iris" / "model.joblib"),
                str(folder),
                json.dumps(instances),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reference.returncode == 0, reference.stderr
        expected = json.loads(reference.stdout)

        for answer, own in zip(answers, expected, strict=True):
            assert answer["meta"]["name"] == own["meta"]["name"] == "AnchorTabular"
            assert answer["data"]["anchor"] == own["data"]["anchor"]
            assert answer["data"]["precision"] == own["data"]["precision"]
            assert answer["data"]["coverage"] == own["data"]["coverage"]
            assert answer["data"]["raw"]["prediction"] == own["data"]["raw"]["prediction"]
            assert answer["meta"]["params"]["seed"] == own["meta"]["params"]["seed"] == 0
        assert answers[0]["data"]["anchor"] != answers[2]["data"]["anchor"]

        # The caller's mistakes are 400s that say what to send instead.
        two = client.post(url, json={"instances": instances[:2]})
        assert two.status_code == 400
        assert "explains one instance at a time and 2 were sent" in two.json()["error"]
        narrow = client.post(url, json={"instances": [[5.1, 3.5, 1.4]]})
        assert narrow.status_code == 400
        assert "instances have 3 features, the training data has 4" in narrow.json()["error"]
