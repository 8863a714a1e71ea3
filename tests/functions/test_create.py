"""`func create`: every template renders a valid function; bad input leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from function_fixtures import OWN_ENVIRONMENT_TEMPLATES, TEMPLATE_NAMES, knserve

from knserve.functions import funcyaml
from knserve.functions.create import create_function
from knserve.functions.errors import FunctionError

SHARED_SCHEMA = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "schemas"
    / "knative-func"
    / "func_yaml-schema.json"
)


def test_the_shipped_schema_is_funcs_own() -> None:
    if not SHARED_SCHEMA.is_file():
        pytest.skip("shared/ is not beside the repository")
    assert json.loads(funcyaml.SCHEMA_PATH.read_text()) == json.loads(SHARED_SCHEMA.read_text())


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_template_renders_a_func_yaml_valid_against_funcs_schema(
    created_functions: dict[str, Path], template: str
) -> None:
    folder = created_functions[template]
    data = yaml.safe_load((folder / "func.yaml").read_text())
    jsonschema.Draft4Validator(json.loads(funcyaml.SCHEMA_PATH.read_text())).validate(data)
    assert data["name"] == f"demo-{template}"
    assert data["invoke"] == ("cloudevent" if template == "cloudevents" else "http")
    assert (folder / "function" / "func.py").is_file() and (folder / "README.md").is_file()
    assert "{{name}}" not in (folder / "function" / "func.py").read_text()
    assert list((folder / "tests").glob("test_*.py"))


def test_the_predictor_answers_at_once_with_its_trained_example(
    created_functions: dict[str, Path],
) -> None:
    assert (created_functions["predictor"] / "model.joblib").is_file()
    assert (created_functions["explainer"] / "background.npy").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"name": "Bad_Name"}, "not a DNS-1123 label", id="name"),
        pytest.param({"name": "-x"}, "not a DNS-1123 label", id="leading-dash"),
        pytest.param(
            {"name": "ok", "template": "grpc"},
            "unknown template 'grpc'; the templates are: http",
            id="template",
        ),
        pytest.param({"name": "ok", "language": "go"}, "unknown language 'go'", id="language"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(FunctionError, match=message):
        create_function(path=tmp_path / "f", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FunctionError, match="already exists and is not empty"):
        create_function("ok", "http", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_func_yaml_that_breaks_the_schema_names_the_field(tmp_path: Path) -> None:
    folder = create_function("ok", "http", tmp_path / "f")
    text = (folder / "func.yaml").read_text().replace("invoke: http", "invoke: grpc")
    (folder / "func.yaml").write_text(text + "template: http\n")
    with pytest.raises(FunctionError) as info:
        funcyaml.load(folder)
    assert "invoke: 'grpc' is not one of ['http', 'cloudevent']" in str(info.value)
    assert "'template' was unexpected" in str(info.value)


def test_cli_lists_templates_and_reports_errors_with_a_non_zero_exit(tmp_path: Path) -> None:
    listed = knserve("func", "create", "-t")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        *TEMPLATE_NAMES,
        *OWN_ENVIRONMENT_TEMPLATES,
    ]
    assert knserve("func", "create", "--list").stdout == listed.stdout
    bad = knserve("func", "create", "-t", "http", "NoGood", "--path", str(tmp_path / "x"))
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: function name 'NoGood' is not a DNS-1123 label")
    made = knserve("func", "create", "-t", "http", "good", "--path", str(tmp_path / "good"))
    assert made.returncode == 0 and (tmp_path / "good" / "func.yaml").is_file()
