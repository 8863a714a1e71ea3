"""Runtime selection exactly as KServe's predictor reconciler selects (pure: plain dicts in)."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.knative.kserve.runtimes import (
    RuntimeNotFound,
    builtin_runtimes,
    merge_runtimes,
    select_runtime,
    stock_runtimes,
    supporting_runtimes,
)


def runtime(
    name: str,
    *formats: dict[str, Any],
    kind: str = "ClusterServingRuntime",
    protocols: list[str] | None = None,
    created: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if created:
        meta["creationTimestamp"] = created
    body: dict[str, Any] = {"supportedModelFormats": list(formats), **spec}
    if protocols is not None:
        body["protocolVersions"] = protocols
    body.setdefault("containers", [{"name": "kserve-container", "image": f"example/{name}"}])
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": body,
    }


def fmt(
    name: str, version: str | None = None, auto: bool | None = True, priority: int | None = None
):
    entry: dict[str, Any] = {"name": name}
    if version is not None:
        entry["version"] = version
    if auto is not None:
        entry["autoSelect"] = auto
    if priority is not None:
        entry["priority"] = priority
    return entry


def model(name: str, version: str | None = None, **fields: Any) -> dict[str, Any]:
    mf: dict[str, Any] = {"name": name}
    if version is not None:
        mf["version"] = version
    return {"modelFormat": mf, **fields}


def chosen(m: dict[str, Any], runtimes: list[dict[str, Any]]) -> str:
    return select_runtime(m, runtimes).name


# ---- KServe's stock runtimes, as KServe installs them ----------------------------------------


@pytest.mark.parametrize(
    ("format_name", "version", "protocol", "expected"),
    [
        ("sklearn", None, None, "kserve-sklearnserver"),  # mlserver speaks only v2
        ("sklearn", "1", None, "kserve-sklearnserver"),
        ("sklearn", None, "v2", "kserve-mlserver"),  # priority 2 beats sklearnserver's 1
        ("sklearn", "0", "v2", "kserve-mlserver"),  # only mlserver lists sklearn 0
        ("xgboost", None, None, "kserve-xgbserver"),
        ("xgboost", "1", "v2", "kserve-mlserver"),
        ("lightgbm", None, "v2", "kserve-mlserver"),
        ("lightgbm", "4", "v1", "kserve-lgbserver"),
        ("mlflow", None, "v2", "kserve-mlserver"),
        ("pytorch", None, None, "kserve-torchserve"),  # priority 2 over knserve-pytorch's 1
        ("pytorch", "1", "grpc-v2", "kserve-torchserve"),
        ("tensorflow", None, None, "kserve-tensorflow-serving"),  # triton has no v1
        ("tensorflow", "2", "v2", "kserve-tritonserver"),
        ("tensorrt", None, "v2", "kserve-tritonserver"),
        ("triton", None, "v2", "kserve-tritonserver"),
        ("onnx", None, None, "knserve-onnxruntime"),
        ("onnx", "1", "v2", "knserve-onnxruntime"),  # priority 2 over triton's 1
        ("paddle", None, None, "kserve-paddleserver"),
        ("pmml", "3", None, "kserve-pmmlserver"),
        ("huggingface", None, "v2", "kserve-huggingfaceserver"),
    ],
)
def test_the_stock_runtimes_are_selected_as_kserve_selects_them(
    format_name: str, version: str | None, protocol: str | None, expected: str
) -> None:
    m = model(format_name, version, **({"protocolVersion": protocol} if protocol else {}))
    assert chosen(m, builtin_runtimes()) == expected


@pytest.mark.parametrize(
    ("m", "needle"),
    [
        (model("sklearn", "2"), "'sklearn' version '2' with protocol v1"),  # no runtime has 2
        (model("mlflow"), "'mlflow' with protocol v1"),  # mlserver speaks only v2
        (model("cobol"), "'cobol'"),
        (model("custom"), "'custom'"),  # knserve-custom is never auto-selected
        (model("pytorch", protocolVersion="grpc-v1"), "protocol grpc-v1"),
    ],
)
def test_no_supporting_runtime_is_kserve_s_reason(m: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuntimeNotFound, match="no runtime found to support") as caught:
        select_runtime(m, builtin_runtimes())
    assert caught.value.reason == "NoSupportingRuntime"
    assert needle in str(caught.value)
    assert "name one with spec.predictor.model.runtime" in str(caught.value)


def test_predictiveserver_is_chosen_only_by_name_since_its_formats_do_not_auto_select() -> None:
    runtimes = builtin_runtimes()
    for name in ("sklearn", "xgboost", "lightgbm"):
        assert "kserve-predictiveserver" not in [
            r.name for r in supporting_runtimes(model(name), runtimes)
        ]
        named = select_runtime(model(name, runtime="kserve-predictiveserver"), runtimes)
        assert named.name == "kserve-predictiveserver" and named.cluster
    # priority 3 counts once a user makes it auto-select, as KServe orders it
    auto = [
        runtime("kserve-predictiveserver", fmt("sklearn", "1", True, 3), protocols=["v1", "v2"])
    ]
    assert chosen(model("sklearn"), merge_runtimes(auto)) == "kserve-predictiveserver"
    with pytest.raises(RuntimeNotFound, match="does not support model format 'onnx'"):
        select_runtime(model("onnx", runtime="kserve-predictiveserver"), runtimes)


# ---- the rules, one by one -------------------------------------------------------------------


def test_namespace_runtimes_come_before_every_cluster_runtime_whatever_the_priority() -> None:
    runtimes = [
        runtime("cluster-high", fmt("sklearn", priority=9)),
        runtime("ns-low", fmt("sklearn", priority=1), kind="ServingRuntime"),
    ]
    assert [r.name for r in supporting_runtimes(model("sklearn"), runtimes)] == [
        "ns-low",
        "cluster-high",
    ]
    assert not select_runtime(model("sklearn"), runtimes).cluster


def test_a_named_runtime_is_the_namespace_s_before_the_cluster_s() -> None:
    runtimes = [
        runtime("same", fmt("sklearn")),
        runtime("same", fmt("sklearn"), kind="ServingRuntime"),
    ]
    assert select_runtime(model("sklearn", runtime="same"), runtimes).cluster is False


def test_disabled_runtimes_are_skipped_and_refused_when_named() -> None:
    runtimes = [
        runtime("off", fmt("sklearn", priority=5), disabled=True),
        runtime("on", fmt("sklearn", priority=1)),
    ]
    assert chosen(model("sklearn"), runtimes) == "on"
    with pytest.raises(RuntimeNotFound, match="'off' is disabled") as caught:
        select_runtime(model("sklearn", runtime="off"), runtimes)
    assert caught.value.reason == "RuntimeDisabled"


def test_an_unknown_named_runtime_is_not_recognized_and_the_names_are_listed() -> None:
    with pytest.raises(
        RuntimeNotFound, match="named 'nope'; available: .*kserve-sklearnserver"
    ) as e:
        select_runtime(model("sklearn", runtime="nope"), builtin_runtimes())
    assert e.value.reason == "RuntimeNotRecognized"


def test_auto_select_is_needed_for_selection_but_not_for_a_named_runtime() -> None:
    runtimes = [
        runtime("manual", fmt("sklearn", auto=False, priority=9)),
        runtime("unset", fmt("sklearn", auto=None)),
        runtime("auto", fmt("sklearn", priority=1)),
    ]
    assert [r.name for r in supporting_runtimes(model("sklearn"), runtimes)] == ["auto"]
    assert chosen(model("sklearn", runtime="manual"), runtimes) == "manual"
    assert chosen(model("sklearn", runtime="unset"), runtimes) == "unset"


def test_priority_orders_and_runtimes_without_one_come_last() -> None:
    runtimes = [
        runtime("a-none", fmt("sklearn")),
        runtime("b-two", fmt("sklearn", priority=2)),
        runtime("c-five", fmt("sklearn", priority=5)),
    ]
    assert [r.name for r in supporting_runtimes(model("sklearn"), runtimes)] == [
        "c-five",
        "b-two",
        "a-none",
    ]


def test_priority_is_the_first_entry_naming_the_format_as_kserve_reads_it() -> None:
    # GetPriority reads the first entry of the name, even one that does not auto-select
    first_manual = runtime("first", fmt("sklearn", "0", False, 9), fmt("sklearn", "1", True, 1))
    other = runtime("other", fmt("sklearn", "1", True, 5))
    assert chosen(model("sklearn", "1"), [other, first_manual]) == "first"


def test_versions_match_exactly_and_a_model_without_one_matches_any() -> None:
    runtimes = [runtime("v1", fmt("sklearn", "1")), runtime("v2", fmt("sklearn", "2"))]
    assert chosen(model("sklearn", "2"), runtimes) == "v2"
    assert chosen(model("sklearn"), runtimes) == "v1"  # equal: by name
    with pytest.raises(RuntimeNotFound):
        select_runtime(model("sklearn", "1.0"), runtimes)
    with pytest.raises(
        RuntimeNotFound, match="does not support model format 'sklearn' version '3'"
    ):
        select_runtime(model("sklearn", "3", runtime="v1"), runtimes)


def test_the_model_protocol_defaults_to_v1_and_must_be_spoken() -> None:
    runtimes = [
        runtime("v2only", fmt("sklearn", priority=5), protocols=["v2"]),
        runtime("both", fmt("sklearn", priority=1), protocols=["v1", "v2"]),
        runtime("any", fmt("sklearn")),  # no protocolVersions: speaks every protocol
    ]
    assert [r.name for r in supporting_runtimes(model("sklearn"), runtimes)] == ["both", "any"]
    assert chosen(model("sklearn", protocolVersion="v2"), runtimes) == "v2only"
    assert chosen(model("sklearn", protocolVersion="grpc-v2"), runtimes) == "any"


def test_a_named_runtime_must_speak_an_explicit_protocol_only() -> None:
    runtimes = [runtime("v2only", fmt("sklearn"), protocols=["v2"])]
    assert chosen(model("sklearn", runtime="v2only"), runtimes) == "v2only"  # v1 not checked
    with pytest.raises(RuntimeNotFound, match="does not support protocol version 'v1'") as e:
        select_runtime(model("sklearn", runtime="v2only", protocolVersion="v1"), runtimes)
    assert e.value.reason == "NoSupportingRuntime"


def test_multi_model_and_multi_node_runtimes_are_never_auto_selected() -> None:
    runtimes = [
        runtime("mms", fmt("sklearn", priority=9), multiModel=True),
        runtime("multinode", fmt("sklearn", priority=9), workerSpec={"containers": []}),
        runtime("single", fmt("sklearn", priority=1)),
    ]
    assert [r.name for r in supporting_runtimes(model("sklearn"), runtimes)] == ["single"]


def test_equal_priorities_fall_back_to_protocol_then_newest_then_name() -> None:
    runtimes = [
        runtime("b-old", fmt("sklearn"), created="2026-01-01T00:00:00Z"),
        runtime("c-new", fmt("sklearn"), created="2026-06-01T00:00:00Z"),
        runtime("a-old", fmt("sklearn"), created="2026-01-01T00:00:00Z"),
        runtime("z-v1", fmt("sklearn"), protocols=["v2", "v1"], created="2025-01-01T00:00:00Z"),
        runtime("y-grpc", fmt("sklearn"), protocols=["grpc-v1", "v1"]),
    ]
    names = [r.name for r in supporting_runtimes(model("sklearn"), runtimes)]
    # lowest protocol v1 first (z-v1, y-grpc: by time, then name), then unknown-protocol ones
    assert names == ["z-v1", "y-grpc", "c-new", "a-old", "b-old"]


def test_a_user_cluster_runtime_replaces_the_built_in_of_its_name() -> None:
    mine = runtime("kserve-sklearnserver", fmt("sklearn", "1", True, 1), disabled=True)
    runtimes = merge_runtimes([mine])
    assert sum(r["metadata"]["name"] == "kserve-sklearnserver" for r in runtimes) == 1
    # with the stock sklearn server disabled, v1 sklearn has no runtime left
    with pytest.raises(RuntimeNotFound):
        select_runtime(model("sklearn"), runtimes)
    # a namespace ServingRuntime of the same name replaces nothing
    ns = runtime("kserve-sklearnserver", fmt("sklearn"), kind="ServingRuntime")
    assert len(merge_runtimes([ns])) == len(builtin_runtimes()) + 1


def test_the_stock_runtimes_are_kserve_s_objects() -> None:
    names = {r["metadata"]["name"] for r in stock_runtimes()}
    assert {
        "kserve-sklearnserver",
        "kserve-xgbserver",
        "kserve-lgbserver",
        "kserve-mlserver",
        "kserve-torchserve",
        "kserve-tritonserver",
        "kserve-paddleserver",
        "kserve-pmmlserver",
        "kserve-predictiveserver",
        "kserve-huggingfaceserver",
    } <= names
    for obj in stock_runtimes():
        assert obj["kind"] == "ClusterServingRuntime"
        assert obj["metadata"]["annotations"]["serving.kserve.io/server-type"]
        assert not any(":replace" in c["image"] for c in obj["spec"]["containers"])
