"""W3C Trace Context, B3 and x-request-id on the wire (knserve.runtime.tracecontext)."""

from __future__ import annotations

import re

import pytest

from knserve.runtime.tracecontext import (
    B3_MULTI,
    B3_SINGLE,
    TraceContext,
    child_headers,
    extract,
    new_request_id,
    new_span_id,
    new_trace_id,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_traceparent_is_read_with_its_flags_and_state() -> None:
    headers = {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "congo=t61rcWkgMzE"}
    assert extract(headers.get) == TraceContext(TRACE, SPAN, True, "congo=t61rcWkgMzE")
    unsampled = {"traceparent": f"00-{TRACE}-{SPAN}-00"}
    assert extract(unsampled.get) == TraceContext(TRACE, SPAN, False)


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short id
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has four fields
        "garbage",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    assert extract({"traceparent": value}.get) is None


def test_a_future_version_is_read_by_its_first_four_fields() -> None:
    found = extract({"traceparent": f"01-{TRACE}-{SPAN}-01-what-comes"}.get)
    assert found is not None and (found.trace_id, found.span_id) == (TRACE, SPAN)


def test_b3_multi_and_single_headers_are_read_when_no_traceparent_came() -> None:
    multi = {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "0"}
    assert extract(multi.get) == TraceContext(TRACE, SPAN, False, "", B3_MULTI)
    single = {"b3": f"{TRACE}-{SPAN}-1"}
    assert extract(single.get) == TraceContext(TRACE, SPAN, True, "", B3_SINGLE)
    # a 64-bit B3 trace id is the low half of a 128-bit one
    short = {"x-b3-traceid": TRACE[16:], "x-b3-spanid": SPAN}
    assert extract(short.get) == TraceContext("0" * 16 + TRACE[16:], SPAN, True, "", B3_MULTI)
    assert extract({"b3": "1"}.get) is None  # a lone sampling decision has no context


def test_w3c_wins_over_b3_but_the_b3_form_is_written_back() -> None:
    headers = {"traceparent": f"00-{TRACE}-{SPAN}-01", "x-b3-traceid": "a" * 32}
    found = extract(headers.get)
    assert found is not None and found.trace_id == TRACE and found.b3 == B3_MULTI
    child = dict(child_headers(found, "1" * 16))
    assert child["traceparent"] == f"00-{TRACE}-{'1' * 16}-01"
    assert (child["x-b3-traceid"], child["x-b3-spanid"], child["x-b3-parentspanid"]) == (
        TRACE,
        "1" * 16,
        SPAN,
    )


def test_child_headers_carry_tracestate_and_the_single_b3_form() -> None:
    context = TraceContext(TRACE, SPAN, False, "vendor=x", B3_SINGLE)
    assert child_headers(context, "2" * 16) == [
        ("traceparent", f"00-{TRACE}-{'2' * 16}-00"),
        ("tracestate", "vendor=x"),
        ("b3", f"{TRACE}-{'2' * 16}-0"),
    ]


def test_new_ids_have_the_shapes_of_their_formats() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(uuid4, i) for i in ids)
