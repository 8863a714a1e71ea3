"""Property test: no body, however malformed, gets a 5xx or takes the server down."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_fixtures import train_sklearn_iris
from runtime_fixtures import model_settings, serving

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=4), st.integers()),
        "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "UINT8", "FP16", "XX", 3]),
        "shape": st.one_of(st.lists(st.integers(-2, 5), max_size=3), st.text(max_size=2)),
        "data": json_values,
        "parameters": json_values,
    },
)
v2_bodies = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(st.lists(tensor, max_size=3), json_values),
        "outputs": json_values,
        "id": json_values,
        "parameters": json_values,
    },
)
v1_bodies = st.fixed_dictionaries({}, optional={"instances": json_values, "inputs": json_values})
raw_bytes = st.binary(max_size=64)


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()  # the stdlib writes integers past 64 bits too


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    train_sklearn_iris(folder)
    return folder


def check(iris_dir, path: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        async with serving(model_settings("iris", iris_dir)) as (client, _):
            for body in bodies:
                response = await client.post(path, content=body, headers=headers or {})
                assert response.status_code < 500, (body, response.text)
                if response.status_code != 200:
                    assert "error" in response.json()
            assert (await client.get("/v2/health/live")).status_code == 200

    asyncio.run(run())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(v2_bodies.map(dumps) | raw_bytes, min_size=1, max_size=8))
def test_v2_never_answers_5xx(iris_dir, bodies: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    check(iris_dir, "/v2/models/iris/infer", bodies)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(v1_bodies.map(dumps) | raw_bytes, min_size=1, max_size=8))
def test_v1_never_answers_5xx(iris_dir, bodies: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    check(iris_dir, "/v1/models/iris:predict", bodies)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(raw_bytes, min_size=1, max_size=4), st.integers(-5, 80))
def test_binary_extension_header_never_answers_5xx(
    iris_dir, bodies: list[bytes], length: int
) -> None:  # type: ignore[no-untyped-def]
    check(
        iris_dir, "/v2/models/iris/infer", bodies, {"Inference-Header-Content-Length": str(length)}
    )
