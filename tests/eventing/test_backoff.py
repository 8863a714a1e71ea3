"""Delivery policy: spec.delivery parsing, Knative's back-off formulas, which answers are retried."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from knserve.eventing.backoff import (
    DEFAULT_DELIVERY,
    Action,
    Decision,
    DeliverySpec,
    InvalidDelivery,
    format_duration,
    is_retryable,
    is_success,
    parse_duration,
    parse_retry_after,
    resolve,
)


def test_no_delivery_spec_gets_knatives_broker_default() -> None:
    spec = DeliverySpec.from_spec(None)
    assert spec == DEFAULT_DELIVERY
    assert (spec.retry, spec.backoff_policy, spec.backoff_delay) == (10, "exponential", 0.2)
    assert spec.timeout is None and spec.dead_letter_sink is None


def test_a_full_delivery_spec_is_read_in_seconds() -> None:
    sink = {"uri": "http://localhost:9000/dead"}
    spec = DeliverySpec.from_spec(
        {
            "retry": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "timeout": "PT10S",
            "retryAfterMax": "PT1M",
            "deadLetterSink": sink,
            "format": "binary",
        }
    )
    assert spec == DeliverySpec(3, "linear", 0.5, 10.0, 60.0, format="binary")
    assert spec.dead_letter_sink == sink


def test_a_given_spec_without_retry_means_no_retries_but_keeps_default_backoff() -> None:
    spec = DeliverySpec.from_spec({"deadLetterSink": {"uri": "http://dlq"}})
    assert spec.retry == 0
    assert (spec.backoff_policy, spec.backoff_delay) == ("exponential", 0.2)
    assert DeliverySpec.from_spec({}).retry == 0


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        pytest.param("linear", [0.5, 1.0, 1.5, 2.0], id="linear-delay-times-n"),
        pytest.param("exponential", [1.0, 2.0, 4.0, 8.0], id="exponential-delay-times-2-to-the-n"),
    ],
)
def test_backoff_before_the_nth_retry_follows_knatives_formula(
    policy: str, delays: list[float]
) -> None:
    spec = DeliverySpec.from_spec({"retry": 4, "backoffPolicy": policy, "backoffDelay": "PT0.5S"})
    assert [spec.delay(n) for n in (1, 2, 3, 4)] == delays


def test_retries_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        DEFAULT_DELIVERY.delay(0)


def test_a_huge_exponential_retry_count_does_not_overflow() -> None:
    assert DEFAULT_DELIVERY.delay(5000) > 1e300


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.2S", 0.2),
        ("PT0,5S", 0.5),
        ("PT30S", 30.0),
        ("PT1M30S", 90.0),
        ("PT1H", 3600.0),
        ("P1D", 86400.0),
        ("P1W", 604800.0),
        ("P1DT1S", 86401.0),
        ("PT0S", 0.0),
    ],
)
def test_iso_8601_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("given", "fix"),
    [
        pytest.param("2s", "write PT2S", id="go-seconds"),
        pytest.param("200ms", "write PT0.2S", id="milliseconds"),
        pytest.param("1m30s", "write PT1M30S", id="go-compound"),
        pytest.param("2", "write PT2S", id="bare-number"),
        pytest.param("pt2s", "write PT2S", id="lowercase"),
        pytest.param("1h", "write PT1H", id="hours"),
        pytest.param("soon", "write it as P[nD]T[nH][nM][nS]", id="nonsense"),
        pytest.param("P", "write it as", id="empty-period"),
        pytest.param("PT", "write it as", id="empty-time"),
        pytest.param("-PT1S", "write it as", id="negative"),
    ],
)
def test_a_bad_backoff_delay_names_the_field_and_the_fix(given: str, fix: str) -> None:
    with pytest.raises(InvalidDelivery) as info:
        DeliverySpec.from_spec({"backoffDelay": given})
    assert str(info.value).startswith(
        f'spec.delivery.backoffDelay "{given}" is not an ISO 8601 duration; '
    )
    assert fix in str(info.value)


def test_the_exact_message_for_a_go_style_duration() -> None:
    with pytest.raises(InvalidDelivery) as info:
        DeliverySpec.from_spec({"backoffDelay": "2s"})
    assert (
        str(info.value) == 'spec.delivery.backoffDelay "2s" is not an ISO 8601 duration; write PT2S'
    )


def test_a_number_for_a_duration_is_refused_with_its_iso_form() -> None:
    with pytest.raises(InvalidDelivery, match=r'spec.delivery.timeout "5" .* write PT5S'):
        DeliverySpec.from_spec({"timeout": 5})


def test_months_and_years_are_refused() -> None:
    with pytest.raises(InvalidDelivery, match="no fixed length; write days"):
        parse_duration("P1M", "spec.delivery.backoffDelay")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"retry": -1},
            "spec.delivery.retry is -1; it must be a whole number",
            id="negative-retry",
        ),
        pytest.param({"retry": "3"}, "spec.delivery.retry is '3'", id="string-retry"),
        pytest.param({"retry": True}, "spec.delivery.retry is True", id="bool-retry"),
        pytest.param({"retry": 1.5}, "spec.delivery.retry is 1.5", id="fractional-retry"),
        pytest.param(
            {"backoffPolicy": "Exponential"},
            "is 'Exponential'; write exponential",
            id="policy-case",
        ),
        pytest.param(
            {"backoffPolicy": "fibonacci"}, "write linear or exponential", id="policy-unknown"
        ),
        pytest.param(
            {"timeout": "PT0S"}, "spec.delivery.timeout must be longer than zero", id="zero-timeout"
        ),
        pytest.param(
            {"deadLetterSink": {}}, "spec.delivery.deadLetterSink needs a uri", id="empty-sink"
        ),
        pytest.param(
            {"deadLetterSink": {"ref": {"name": "x"}}},
            "a ref with kind and name",
            id="ref-without-kind",
        ),
        pytest.param(
            {"deadLetterSink": "http://x"}, "deadLetterSink needs a uri", id="sink-string"
        ),
        pytest.param({"format": "xml"}, "spec.delivery.format is 'xml'; write json", id="format"),
        pytest.param(
            {"retries": 3},
            "spec.delivery.retries is not a delivery field; did you mean retry?",
            id="typo",
        ),
    ],
)
def test_invalid_delivery_fields_say_what_to_write(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidDelivery) as info:
        DeliverySpec.from_spec(spec)
    assert message in str(info.value)


def test_a_delivery_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidDelivery, match="spec.delivery must be an object"):
        DeliverySpec.from_spec(["retry"])  # type: ignore[arg-type]


def test_a_ref_dead_letter_sink_is_kept() -> None:
    ref = {"ref": {"kind": "Service", "apiVersion": "serving.knative.dev/v1", "name": "dlq"}}
    assert DeliverySpec.from_spec({"deadLetterSink": ref}).dead_letter_sink == ref


def test_a_triggers_delivery_replaces_the_brokers_whole() -> None:
    trigger = {"retry": 1}
    broker = {"retry": 7, "backoffPolicy": "linear", "deadLetterSink": {"uri": "http://dlq"}}
    spec = resolve(trigger, broker)
    assert (
        spec.retry == 1 and spec.backoff_policy == "exponential" and spec.dead_letter_sink is None
    )
    assert resolve(None, broker).retry == 7
    assert resolve(None, None) == DEFAULT_DELIVERY


def test_resolve_says_whose_delivery_is_wrong() -> None:
    with pytest.raises(InvalidDelivery, match=r"^trigger spec.delivery.retry"):
        resolve({"retry": -1}, None)
    with pytest.raises(InvalidDelivery, match=r"^broker spec.delivery.backoffDelay"):
        resolve(None, {"backoffDelay": "1s"})


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        pytest.param(None, True, id="no-response"),
        *[pytest.param(s, True, id=str(s)) for s in (404, 408, 409, 429, 500, 502, 503, 504, 599)],
        *[
            pytest.param(s, False, id=str(s))
            for s in (301, 302, 400, 401, 403, 405, 410, 413, 415, 422)
        ],
        pytest.param(200, False, id="200-is-not-a-failure"),
    ],
)
def test_knatives_selective_retry(status: int | None, retryable: bool) -> None:
    assert is_retryable(status) is retryable


def test_every_2xx_is_success() -> None:
    assert all(is_success(s) for s in (200, 201, 202, 204, 299))
    assert not any(is_success(s) for s in (199, 300, 404, 500))


LINEAR = DeliverySpec(retry=2, backoff_policy="linear", backoff_delay=1.0)


def test_a_2xx_is_delivered_whatever_the_count() -> None:
    assert LINEAR.decide(5, 204) == Decision(Action.DELIVERED)


def test_a_retryable_failure_is_retried_with_the_backoff_of_the_next_retry() -> None:
    assert LINEAR.decide(0, 503) == Decision(Action.RETRY, 1.0)
    assert LINEAR.decide(1, None) == Decision(Action.RETRY, 2.0)


def test_after_the_last_retry_the_event_goes_to_the_dead_letter_sink() -> None:
    assert LINEAR.decide(2, 503) == Decision(Action.DEAD_LETTER)


@pytest.mark.parametrize("status", [400, 401, 403, 410, 302])
def test_a_permanent_failure_goes_to_the_dead_letter_sink_at_once(status: int) -> None:
    assert LINEAR.decide(0, status) == Decision(Action.DEAD_LETTER)


def test_no_retries_configured_means_dead_letter_after_the_first_failure() -> None:
    assert DeliverySpec(retry=0).decide(0, 500).action is Action.DEAD_LETTER


def test_retry_after_on_429_and_503_wins_when_longer() -> None:
    assert LINEAR.decide(0, 429, retry_after=30.0) == Decision(Action.RETRY, 30.0)
    assert LINEAR.decide(0, 503, retry_after=0.5) == Decision(Action.RETRY, 1.0)


def test_retry_after_is_ignored_on_other_statuses() -> None:
    assert LINEAR.decide(0, 500, retry_after=30.0) == Decision(Action.RETRY, 1.0)


def test_retry_after_max_caps_retry_after_and_zero_turns_it_off() -> None:
    capped = DeliverySpec.from_spec(
        {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT1S", "retryAfterMax": "PT5S"}
    )
    assert capped.decide(0, 429, retry_after=30.0).delay == 5.0
    off = DeliverySpec.from_spec(
        {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT1S", "retryAfterMax": "PT0S"}
    )
    assert off.decide(0, 429, retry_after=30.0).delay == 1.0


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("120", 120.0, id="delay-seconds"),
        pytest.param(" 7 ", 7.0, id="padded"),
        pytest.param(
            format_datetime(datetime(2025, 3, 1, 12, 0, 45, tzinfo=UTC), usegmt=True),
            45.0,
            id="http-date",
        ),
        pytest.param(
            format_datetime(datetime(2025, 3, 1, 11, 0, tzinfo=UTC), usegmt=True),
            0.0,
            id="date-in-the-past",
        ),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("tomorrow", None, id="unreadable"),
        pytest.param("-5", None, id="negative"),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "PT0.2S"), (90, "PT1M30S"), (3600, "PT1H"), (0, "PT0S"), (3725.5, "PT1H2M5.5S")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
