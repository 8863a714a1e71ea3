"""Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `128974848`, `129e6`), as numbers.

The grammar is apimachinery's resource.Quantity: a signed decimal with an optional suffix that is
binary (Ki Mi Gi Ti Pi Ei), decimal SI (n u m k M G T P E) or a decimal exponent (e3, E-2). Pure.
"""

from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE]?)")


def parse_quantity(text: object) -> float:
    """The quantity's value in base units (cores, bytes); ValueError saying the accepted forms."""
    found = _QUANTITY.fullmatch(str(text).strip())
    if found is None:
        raise ValueError(
            f"quantity {text!r} is not a Kubernetes quantity (use e.g. 500m, 2, 512Mi or 1Gi)"
        )
    number, suffix = float(found.group(1)), found.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * 10.0 ** int(suffix[1:])
    return number * _DECIMAL[suffix]
