"""Named-column requests as pandas DataFrames, as KServe's tabular servers read them.

Two request forms carry a table rather than a tensor, and KServe's sklearn, xgboost and lightgbm
servers decode both into a DataFrame (kserve/utils/utils.py, get_predict_input):

- V1 `instances` (or `inputs`) whose items are JSON objects. KServe reads each item as a frame of
  its own and stacks them: an object of columns (`{"a": [1, 2], "b": [3, 4]}`) or a list of row
  objects (`[{"a": 1, "b": 3}, ...]`). An object of scalars (`{"a": 1, "b": 3}`), the form most
  clients write for one row, is one row here; KServe's pandas call refuses it ("If using all
  scalar values, you must pass an index"), so accepting it changes no answer KServe gives.
- V2 requests whose `parameters.content_type` is `"pd"` (request level, as KServe reads it): each
  input is one column named by the input (kserve/protocol/infer_type.py,
  InferRequest.as_dataframe), BYTES decoded to str. A column is built from the request's JSON
  values, as KServe builds it, so `5.1` sent as FP32 is the float64 5.1 there too.

pandas is imported only when such a request arrives; the sklearn, xgboost and lightgbm extras
install it, and a server without it answers with the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knserve.runtime.errors import InferenceError, InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from knserve.runtime.protocols.v2 import InferInput

_SCALARS = (str, int, float, bool, type(None))


def is_named(instances: list[Any]) -> bool:
    """Whether V1 instances are named columns (KServe's test: the first item is an object, or a
    list whose first item is one)."""
    first = instances[0]
    return isinstance(first, dict) or (
        isinstance(first, list) and bool(first) and isinstance(first[0], dict)
    )


def pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise InferenceError(
            "named-column requests need pandas on the server: pip install 'knserve[sklearn]' "
            "(or knserve[xgboost], knserve[lightgbm])"
        ) from None
    return pd


def v1_frame(instances: list[Any]) -> pd.DataFrame:
    """V1 instances of objects as one DataFrame, rows in request order."""
    pd = pandas()
    if all(isinstance(i, dict) and _is_row(i) for i in instances):
        return pd.DataFrame.from_records(instances)  # the common case: one object per row
    frames = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) and _is_row(instance):
            frames.append(pd.DataFrame([instance]))
            continue
        if not (
            isinstance(instance, dict)
            or (isinstance(instance, list) and all(isinstance(r, dict) for r in instance))
        ):
            raise InvalidInput(
                f"instances[{index}] is a {_json_type(instance)}; with named columns every "
                'instance is an object of values ({"a": 1}), of columns ({"a": [1, 2]}) or a '
                "list of such row objects"
            )
        try:
            frames.append(pd.DataFrame(instance))
        except ValueError as exc:
            raise InvalidInput(f"instances[{index}] is no table of named columns: {exc}") from None
    return pd.concat(frames, ignore_index=True)


def v2_frame(inputs: list[InferInput]) -> pd.DataFrame:
    """V2 inputs as the columns of one DataFrame, each named by its input."""
    pd = pandas()
    columns: dict[str, Any] = {}
    rows = None
    for tensor in inputs:
        if tensor.name in columns:
            raise InvalidInput(f"input {tensor.name!r} appears twice; each column is one input")
        values = tensor.column()
        if rows is not None and len(values) != rows:
            first = next(iter(columns))
            raise InvalidInput(
                f"input {tensor.name!r} has {len(values)} values but {first!r} has {rows}; with "
                'content_type "pd" every input is one column and all have the same length'
            )
        rows = len(values)
        columns[tensor.name] = values
    return pd.DataFrame(columns)


def _is_row(instance: dict[str, Any]) -> bool:
    return bool(instance) and all(isinstance(v, _SCALARS) for v in instance.values())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "list"
