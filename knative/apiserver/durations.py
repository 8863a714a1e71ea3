"""Go's `time.Duration` text, as Knative's annotations and ConfigMaps write durations.

`parse_duration` reads what Go's `time.ParseDuration` reads ("60s", "1m30s", "1.5h", "0") into
seconds; `format_duration` writes seconds back as Go's `Duration.String()` does ("1h0m0s",
"1m30s", "500ms"), so messages about durations read as Knative's do.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)"


def parse_duration(text: str) -> float:
    """Parse a Go duration as Knative's annotations use them ("60s", "1m30s", "1.5h", "0") to seconds."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in ("+", "-") else body
    if body == "0":
        return 0.0
    if not body or not re.fullmatch(f"(?:{_PART})+", body):
        raise ValueError(f'"{text}" is not a duration; write it like "60s", "1m30s" or "2m"')
    return sign * sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, body))


def format_duration(seconds: float) -> str:
    """Seconds as Go prints a `time.Duration`: "0s", "500ms", "1.5s", "1m30s", "1h0m0s"."""
    nanos = round(seconds * 1e9)
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return f"{sign}{_decimal(nanos, size)}{unit}"
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{_decimal(rest, 1_000_000_000)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
