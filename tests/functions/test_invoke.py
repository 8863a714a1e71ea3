"""`func invoke` chooses its target as func does and sends the template's sample without --data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from function_fixtures import knserve
from plane_fixtures import LocalPlane

from knserve.functions.create import create_function
from knserve.functions.invoke import SAMPLE, read_data
from knserve.functions.templates import template_root


@pytest.mark.slow
def test_a_deployed_function_that_does_not_run_locally_is_invoked_where_it_is_deployed(
    functions_home: Path, plane: LocalPlane, tmp_path: Path
) -> None:
    folder = create_function("iris", "predictor", tmp_path / "iris")
    env = {"KNSERVE_API": plane.api, "KNSERVE_GATEWAY": plane.gateway}

    nowhere = knserve("func", "invoke", "--path", str(folder), env=env)
    assert nowhere.returncode == 1
    assert "is not running locally" in nowhere.stderr
    assert "it is not deployed in namespace 'default' (`knserve func deploy`)" in nowhere.stderr

    deployed = plane.knserve("func", "deploy", "--path", str(folder))
    assert deployed.returncode == 0, deployed.stderr + plane.log()

    # no --target: not running locally, so the deployed one; no --data: the template's sample
    answer = knserve("func", "invoke", "--path", str(folder), env=env)
    assert answer.returncode == 0, answer.stderr + plane.log()
    assert json.loads(answer.stdout) == {"predictions": [1, 1]}
    remote = knserve(
        "func",
        "invoke",
        "--path",
        str(folder),
        "--target",
        "remote",
        "--data",
        '{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
        env=env,
    )
    assert json.loads(remote.stdout) == {"predictions": [0]}

    local = knserve("func", "invoke", "--path", str(folder), "--target", "local", env=env)
    assert local.returncode == 1
    assert "is not running: start it with `knserve func run`" in local.stderr


def test_the_predictor_and_transformer_templates_ship_a_sample_request(tmp_path: Path) -> None:
    for template in ("predictor", "transformer"):
        sample = json.loads((template_root() / template / SAMPLE).read_text())
        assert [len(row) for row in sample["instances"]] == [4, 4]  # iris rows
    assert read_data(None, tmp_path) == b"{}"  # no sample: an empty object, as before
    (tmp_path / SAMPLE).write_text('{"instances": [[1, 2, 3, 4]]}')
    assert read_data(None, tmp_path) == b'{"instances": [[1, 2, 3, 4]]}'
    assert read_data('{"a": 1}', tmp_path) == b'{"a": 1}'
