"""Kubernetes' JSONPath dialect, as CRDs' `additionalPrinterColumns` use it.

`.status.url`, `.status.conditions[?(@.type=='Ready')].status`, `.spec.containers[*].name`,
`.metadata.annotations.eventing\\.knative\\.dev/broker\\.class`: fields (a backslash escapes a dot
inside a key), `[n]`, `[*]` and `[?(@.path==literal)]` / `!=` / existence filters. Written here
because generic JSONPath libraries parse the escaped dots and the missing `$` differently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

_FILTER = re.compile(r"\?\(\s*@((?:\.(?:\\.|[^.=!\s])+)+)\s*(?:(==|!=)\s*(.+?))?\s*\)")


@dataclass(frozen=True)
class _Step:
    kind: str  # "field", "index", "all", "filter"
    key: str = ""
    index: int = 0
    path: tuple[_Step, ...] = ()
    op: str = ""
    literal: Any = None


class JsonPathError(ValueError):
    """A path this dialect cannot parse."""


@cache
def parse(path: str) -> tuple[_Step, ...]:
    """The steps of `path` (with or without the `{…}` and leading `$` kubectl allows)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    steps: list[_Step] = []
    at = 0
    while at < len(text):
        if text[at] == ".":
            at += 1
            key = ""
            while at < len(text) and text[at] not in ".[":
                if text[at] == "\\" and at + 1 < len(text):
                    at += 1
                key += text[at]
                at += 1
            if key:
                steps.append(_Step("field", key=key))
        elif text[at] == "[":
            end = text.find("]", at)
            if end < 0:
                raise JsonPathError(f"{path!r}: '[' without ']'")
            steps.append(_bracket(text[at + 1 : end].strip(), path))
            at = end + 1
        else:
            raise JsonPathError(f"{path!r}: expected '.' or '[' at {text[at:]!r}")
    return tuple(steps)


def _bracket(inner: str, path: str) -> _Step:
    if inner == "*":
        return _Step("all")
    if re.fullmatch(r"-?\d+", inner):
        return _Step("index", index=int(inner))
    if inner[:1] in "'\"" and inner[-1:] == inner[:1]:
        return _Step("field", key=inner[1:-1].replace("\\.", "."))
    found = _FILTER.fullmatch(inner)
    if found is None:
        raise JsonPathError(f"{path!r}: cannot read [{inner}]")
    sub, op, literal = found.groups()
    return _Step("filter", path=parse(sub), op=op or "", literal=_literal(literal) if op else None)


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _walk(values: list[Any], steps: tuple[_Step, ...]) -> list[Any]:
    for step in steps:
        found: list[Any] = []
        for value in values:
            if step.kind == "field" and isinstance(value, dict) and step.key in value:
                found.append(value[step.key])
            elif step.kind == "index" and isinstance(value, list):
                if -len(value) <= step.index < len(value):
                    found.append(value[step.index])
            elif step.kind == "all" and isinstance(value, (list, dict)):
                found.extend(value if isinstance(value, list) else value.values())
            elif step.kind == "filter" and isinstance(value, list):
                found.extend(item for item in value if _keeps(item, step))
        values = found
    return values


def _keeps(item: Any, step: _Step) -> bool:
    matched = _walk([item], step.path)
    if not step.op:
        return bool(matched)
    equal = any(m == step.literal or str(m) == str(step.literal) for m in matched)
    return equal if step.op == "==" else not equal


def find(obj: Any, path: str) -> list[Any]:
    """Every value `path` selects in `obj`, in order (empty when it selects none)."""
    return _walk([obj], parse(path))
