"""Retry policy for event delivery: Knative's ``spec.delivery``, as pure values and decisions.

A Trigger (or, failing that, its Broker) carries a ``spec.delivery``::

    retry: 3                  # retries after the first attempt
    backoffPolicy: linear     # or exponential
    backoffDelay: PT0.5S      # ISO 8601 duration
    timeout: PT10S            # per attempt
    retryAfterMax: PT30S      # cap on a subscriber's Retry-After
    deadLetterSink: {uri: http://...}   # or {ref: {...}}

:meth:`DeliverySpec.from_spec` validates it and raises :class:`InvalidDelivery` naming the field
and the fix; :meth:`DeliverySpec.decide` turns one attempt's outcome into a :class:`Decision`
(delivered, retry after so many seconds, or dead-letter). Nothing here does I/O or reads a clock:
the dispatcher passes the status and the ``Retry-After`` it got and schedules what comes back.

Where the numbers come from (Knative Eventing, ``pkg/kncloudevents/retries.go``):

* back-off before the n-th retry: linear ``delay × n``, exponential ``delay × 2ⁿ`` -- as the
  CRD's ``backoffDelay`` documentation states them, n counting from 1;
* retried: no response at all (refused, reset, timed out), 5xx, 404 (a pod becoming ready), 408,
  409 and 429 (``SelectiveRetry``); everything else that is not 2xx goes to the dead-letter sink
  at once, 3xx included;
* ``Retry-After`` (seconds or an HTTP date) is honoured on 429 and 503 only, the longer of it and
  the back-off wins, ``retryAfterMax`` caps it and ``PT0S`` turns it off (Knative's GA semantics);
* no ``spec.delivery`` anywhere: Knative's ``config-br-defaults`` (retry 10, exponential, PT0.2S).
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

__all__ = [
    "DEFAULT_DELIVERY",
    "RETRYABLE_STATUSES",
    "Action",
    "BackoffPolicy",
    "Decision",
    "DeliverySpec",
    "InvalidDelivery",
    "format_duration",
    "is_retryable",
    "is_success",
    "parse_duration",
    "parse_retry_after",
    "resolve",
]

BackoffPolicy = Literal["linear", "exponential"]
POLICIES: tuple[BackoffPolicy, ...] = ("linear", "exponential")
FIELDS = (
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "timeout",
    "retryAfterMax",
    "deadLetterSink",
    "format",
)
FORMATS = ("json", "binary")
RETRYABLE_STATUSES = frozenset({404, 408, 409, 429})  # plus every 5xx and no response at all
RETRY_AFTER_STATUSES = frozenset({429, 503})  # the only answers whose Retry-After Knative reads
MAX_RETRY = 2**31 - 1  # the CRD's int32
# 2.0 ** 1024 overflows a float; a delay of 2 ** 1000 seconds is forever anyway.
_MAX_EXPONENT = 1000


class InvalidDelivery(ValueError):
    """An invalid ``spec.delivery``; ``str()`` names the field by its path and says what to write."""


class Action(enum.Enum):
    """What the dispatcher does after one delivery attempt."""

    DELIVERED = "delivered"  # a 2xx: done with this event for this trigger
    RETRY = "retry"  # try again after Decision.delay seconds
    DEAD_LETTER = "dead-letter"  # give up: send to the dead-letter sink, or drop and count


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float = 0.0  # seconds to wait before the retry (only for Action.RETRY)


@dataclass(frozen=True)
class DeliverySpec:
    """A validated ``spec.delivery``. Durations are in seconds."""

    retry: int = 0  # retries after the first attempt; Knative's default for a given spec is none
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: float = 0.2
    timeout: float | None = None  # per attempt; None: not set (the dispatcher's own cap applies)
    retry_after_max: float | None = None  # None: honour Retry-After in full; 0: ignore it
    dead_letter_sink: Mapping[str, Any] | None = field(default=None, compare=False)
    format: str | None = None  # json (structured) or binary; None: the dispatcher's choice

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, path: str = "spec.delivery") -> DeliverySpec:
        """Validate a ``spec.delivery`` mapping; ``None`` (no delivery at all) gives Knative's
        broker default, :data:`DEFAULT_DELIVERY`.

        Inside a given spec, a missing ``retry`` means no retries (as Knative); a missing
        ``backoffPolicy`` or ``backoffDelay`` takes the broker default's (exponential, PT0.2S)
        rather than Knative's zero back-off, so ``retry: 5`` alone does not hammer a subscriber.
        """
        if spec is None:
            return DEFAULT_DELIVERY
        if not isinstance(spec, Mapping):
            raise InvalidDelivery(f"{path} must be an object with fields {', '.join(FIELDS)}")
        for key in spec:
            if key not in FIELDS:
                close = difflib.get_close_matches(str(key), FIELDS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise InvalidDelivery(
                    f"{path}.{key} is not a delivery field; {hint}(fields: {', '.join(FIELDS)})"
                )
        values: dict[str, Any] = {}
        if spec.get("retry") is not None:
            retry = spec["retry"]
            if isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= MAX_RETRY:
                raise InvalidDelivery(
                    f"{path}.retry is {retry!r}; it must be a whole number of retries, 0 or more"
                )
            values["retry"] = retry
        if spec.get("backoffPolicy") is not None:
            values["backoff_policy"] = _policy(spec["backoffPolicy"], f"{path}.backoffPolicy")
        if spec.get("backoffDelay") is not None:
            values["backoff_delay"] = parse_duration(spec["backoffDelay"], f"{path}.backoffDelay")
        if spec.get("timeout") is not None:
            timeout = parse_duration(spec["timeout"], f"{path}.timeout")
            if timeout <= 0:
                raise InvalidDelivery(f"{path}.timeout must be longer than zero, e.g. PT30S")
            values["timeout"] = timeout
        if spec.get("retryAfterMax") is not None:
            values["retry_after_max"] = parse_duration(
                spec["retryAfterMax"], f"{path}.retryAfterMax"
            )
        if spec.get("deadLetterSink") is not None:
            values["dead_letter_sink"] = _sink(spec["deadLetterSink"], f"{path}.deadLetterSink")
        if spec.get("format") is not None:
            if spec["format"] not in FORMATS:
                raise InvalidDelivery(
                    f"{path}.format is {spec['format']!r}; write json (structured) or binary"
                )
            values["format"] = spec["format"]
        return cls(**values)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        if attempt < 1:
            raise ValueError(f"attempt counts retries from 1, got {attempt}")
        if self.backoff_policy == "linear":
            return self.backoff_delay * attempt
        return self.backoff_delay * 2.0 ** min(attempt, _MAX_EXPONENT)

    def decide(
        self, retries_done: int, status: int | None, retry_after: float | None = None
    ) -> Decision:
        """What to do after an attempt that got ``status`` (None: no response at all).

        ``retries_done`` counts the retries made before this attempt (0 after the first one);
        ``retry_after`` is the subscriber's ``Retry-After`` in seconds (see
        :func:`parse_retry_after`), read only on 429 and 503.
        """
        if status is not None and is_success(status):
            return Decision(Action.DELIVERED)
        if not is_retryable(status) or retries_done >= self.retry:
            return Decision(Action.DEAD_LETTER)
        delay = self.delay(retries_done + 1)
        if retry_after is not None and status in RETRY_AFTER_STATUSES:
            if self.retry_after_max is not None:
                retry_after = min(retry_after, self.retry_after_max)
            delay = max(delay, retry_after)
        return Decision(Action.RETRY, delay)


DEFAULT_DELIVERY = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.2)
"""Knative's ``config-br-defaults``: what a Broker without ``spec.delivery`` gets."""


def resolve(
    trigger_delivery: Mapping[str, Any] | None, broker_delivery: Mapping[str, Any] | None
) -> DeliverySpec:
    """The delivery a trigger uses: its own ``spec.delivery`` replaces the broker's whole (as in
    Knative's broker filter, no field-by-field merge); with neither, :data:`DEFAULT_DELIVERY`."""
    if trigger_delivery is not None:
        return DeliverySpec.from_spec(trigger_delivery, "trigger spec.delivery")
    return DeliverySpec.from_spec(broker_delivery, "broker spec.delivery")


def is_success(status: int) -> bool:
    """A 2xx ends the delivery (a 200 may carry a reply event)."""
    return 200 <= status < 300


def is_retryable(status: int | None) -> bool:
    """Whether an attempt that got ``status`` is retried (None: no response, e.g. refused or
    timed out). Knative's ``SelectiveRetry``: 5xx, 404, 408, 409, 429; not 3xx, nor other 4xx."""
    return status is None or status >= 500 or status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (Unix time): delay-seconds or an
    HTTP date (RFC 9110). None when absent or unreadable -- the back-off alone then applies."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now)


# ---- ISO 8601 durations --------------------------------------------------------------------

_NUMBER = r"\d+(?:[.,]\d+)?"
_ISO = re.compile(
    rf"P(?:(?P<years>{_NUMBER})Y)?(?:(?P<months>{_NUMBER})M)?(?:(?P<weeks>{_NUMBER})W)?"
    rf"(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?"
)
_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
# What people write instead (Go's time.Duration, kubectl, plain numbers), to suggest the fix.
_HUMAN = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_HUMAN_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any, path: str = "duration") -> float:
    """An ISO 8601 duration (``PT0.2S``, ``PT1M30S``, ``P1D``) in seconds, as Knative's
    ``backoffDelay``, ``timeout`` and ``retryAfterMax`` take them. Years and months are refused:
    they have no fixed length."""
    text = value if isinstance(value, str) else repr(value)
    match = _ISO.fullmatch(text) if isinstance(value, str) else None
    parts = {k: v for k, v in match.groupdict().items() if v is not None} if match else {}
    if not parts or text.endswith("T"):
        raise InvalidDelivery(f'{path} "{text}" is not an ISO 8601 duration; {_suggest(text)}')
    if "years" in parts or "months" in parts:
        raise InvalidDelivery(
            f'{path} "{text}" counts years or months, which have no fixed length; write days, e.g. P30D'
        )
    return sum(float(v.replace(",", ".")) * _SECONDS[k] for k, v in parts.items())


def _suggest(text: str) -> str:
    upper = text.strip().upper()
    if upper != text and _ISO.fullmatch(upper) and not upper.endswith("T") and upper != "P":
        return f"write {upper}"
    tokens = _HUMAN.findall(text.strip())
    if tokens and _HUMAN.sub("", text).strip() == "" and len(tokens) <= 4:
        seconds = sum(float(n) * _HUMAN_UNIT[u.lower() if u else None] for n, u in tokens)
        return f"write {format_duration(seconds)}"
    return "write it as P[nD]T[nH][nM][nS], e.g. PT0.2S, PT30S or PT1M30S"


def format_duration(seconds: float) -> str:
    """Seconds as an ISO 8601 duration: 0.2 -> PT0.2S, 90 -> PT1M30S, 3600 -> PT1H."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration is a finite number of seconds, 0 or more, got {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{int(hours)}H"
    if minutes:
        out += f"{int(minutes)}M"
    if secs or out == "PT":
        out += f"{round(secs, 6):f}".rstrip("0").rstrip(".") + "S"
    return out


def _policy(value: Any, path: str) -> BackoffPolicy:
    for policy in POLICIES:
        if value == policy:
            return policy
    lowered = str(value).strip().lower()
    hint = f"write {lowered}" if lowered in POLICIES else "write linear or exponential"
    raise InvalidDelivery(f"{path} is {value!r}; {hint}")


def _sink(value: Any, path: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        ref, uri = value.get("ref"), value.get("uri")
        if isinstance(uri, str) and uri:
            return value
        if isinstance(ref, Mapping) and ref.get("name") and ref.get("kind"):
            return value
    raise InvalidDelivery(
        f"{path} needs a uri (e.g. http://localhost:9000/dead) or a ref with kind and name "
        "(e.g. {kind: Service, apiVersion: serving.knative.dev/v1, name: dlq})"
    )
