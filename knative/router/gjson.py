"""The part of GJSON's path syntax that KServe's router conditions use, on parsed JSON.

KServe's router decides Switch steps and Sequence conditions with tidwall/gjson:
`gjson.GetBytes(body, condition).Exists()`. Its documentation and tests write conditions such as
`[@this].#(source==client)`, `instances.#(intval>10)`, `instances.#(strval%*red-server*)` and
`predictions.#(label=="dog")`: values unquoted as well as quoted. The Python port on PyPI
(gjson-py) accepts only JSON values in queries and refuses the unquoted ones, so this module
implements the subset as tidwall/gjson evaluates it:

- paths of keys separated by `.` or `|` (`\\` escapes a separator or wildcard), `*` and `?`
  wildcards in a key (the first key that matches), a number as an array index;
- `#` (an array's length), `#.rest` (`rest` of every element that has it);
- queries `#(path op value)` (the first element that matches) and `#(…)#` (all of them), with
  gjson's operators `==` `=` `!=` `<` `<=` `>` `>=` `%` (pattern) `!%`, quoted or bare values,
  `~true` `~false` `~null` `~*`, a query path that is itself a path (nested queries), and no
  operator (the element has the path);
- multipaths `[a,b]` (an array of those that exist) and the `@this` modifier.

`get` returns MISSING when the path selects nothing, as gjson's `Result.Exists()` is false.
Comparisons follow `queryMatches`: a string compares with strings, a number with the value read
as a float (0 when it is not one), true and false with the words, anything else never matches.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["MISSING", "exists", "get"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
_OPERATORS = ("==", "!=", "<=", ">=", "!%", "=", "<", ">", "%")


def exists(document: Any, path: str) -> bool:
    """gjson's `Get(json, path).Exists()` on a parsed document."""
    return get(document, path) is not MISSING


def get(document: Any, path: str) -> Any:
    """The value `path` selects in `document`, or MISSING."""
    if path == "":
        return MISSING
    return _walk(document, path)


def _walk(value: Any, path: str) -> Any:
    if path == "":
        return value
    if value is MISSING:
        return MISSING
    head, rest = _split(path)
    if head.startswith("[") and head.endswith("]"):
        return _walk(_multipath(value, head[1:-1]), rest)
    if head.startswith("@"):
        return _walk(value if head == "@this" else MISSING, rest)
    if head.startswith("#(") or head.startswith("#["):
        return _query(value, head, rest)
    if head == "#":
        if not isinstance(value, list):
            return MISSING
        if rest:
            found = [_walk(item, rest) for item in value]
            return [item for item in found if item is not MISSING]
        return len(value)
    if isinstance(value, dict):
        key = _unescape(head)
        if key in value:
            return _walk(value[key], rest)
        if _has_wildcard(head):
            pattern = _pattern(head)
            for name, item in value.items():
                if pattern.fullmatch(name):
                    return _walk(item, rest)
        return MISSING
    if isinstance(value, list) and head.isdigit():
        index = int(head)
        return _walk(value[index], rest) if index < len(value) else MISSING
    return MISSING


def _split(path: str) -> tuple[str, str]:
    """The first component of `path` and the rest after its separator; brackets, parentheses
    and quoted strings inside a component are kept whole."""
    depth, i = 0, 0
    while i < len(path):
        char = path[i]
        if char == "\\":
            i += 2
            continue
        if char == '"' and depth:
            i = _string_end(path, i)
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in ".|" and depth == 0:
            return path[:i], path[i + 1 :]
        i += 1
    return path, ""


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text) and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i


def _multipath(value: Any, inner: str) -> list[Any]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            i = _string_end(inner, i)
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    parts.append(inner[start:])
    found = [_walk(value, part.strip()) for part in parts if part.strip()]
    return [item for item in found if item is not MISSING]


def _query(value: Any, head: str, rest: str) -> Any:
    every = head.endswith("#")
    body = head[2 : -2 if every else -1]
    if not isinstance(value, list):
        return MISSING
    query_path, op, wanted = _parse_query(body)
    matches = []
    for item in value:
        if isinstance(item, (dict, list)):
            subject = _walk(item, query_path) if query_path else item
        else:
            subject = MISSING if query_path else item
        if _matches(subject, op, wanted):
            selected = _walk(item, rest) if rest else item
            if not every:
                return selected
            if selected is not MISSING:
                matches.append(selected)
    return matches if every else MISSING


def _parse_query(body: str) -> tuple[str, str, str]:
    """(path, operator, value) of a query's body, as gjson's parseQuery splits it: the operator
    is the first of `!=<>%` outside brackets and strings."""
    depth, i = 0, 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            i = _string_end(body, i)
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char in "!=<>%" and depth == 0:
            rest = body[i:]
            op = next(o for o in (*_OPERATORS, "!") if rest.startswith(o))
            value = rest[len(op) :].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = _unquote(value[1:-1])
            return body[:i].strip(), "=" if op == "==" else op, value
        i += 1
    return body.strip(), "", ""


def _matches(subject: Any, op: str, wanted: str) -> bool:
    if wanted.startswith("~"):
        subject, wanted = _truthiness(subject, wanted[1:])
    if subject is MISSING:
        return False
    if op == "":
        return True
    if subject is True:
        return {"=": wanted == "true", "!=": wanted != "true", ">": wanted == "false"}.get(
            op, op == ">="
        )
    if subject is False:
        return {"=": wanted == "false", "!=": wanted != "false", "<": wanted == "true"}.get(
            op, op == "<="
        )
    if isinstance(subject, str):
        return _compare_text(subject, op, wanted)
    if isinstance(subject, (int, float)):
        return _compare_number(float(subject), op, _float(wanted))
    return False


def _truthiness(subject: Any, word: str) -> tuple[Any, str]:
    """gjson's `~` values: the subject becomes true or false by the word's test."""
    if word == "*":
        return subject is not MISSING, "true"
    if word == "null":
        return subject is None, "true"
    if word == "true":
        return _trueish(subject), "true"
    if word == "false":
        return _falseish(subject), "true"
    return MISSING, ""


def _trueish(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("1", "t", "true")
    if isinstance(value, (int, float)):
        return value != 0
    return False


def _falseish(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return value.lower() in ("0", "f", "false")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return False


def _compare_text(text: str, op: str, wanted: str) -> bool:
    if op in ("%", "!%"):
        return bool(_pattern(wanted).fullmatch(text)) == (op == "%")
    return {
        "=": text == wanted,
        "!=": text != wanted,
        "<": text < wanted,
        "<=": text <= wanted,
        ">": text > wanted,
        ">=": text >= wanted,
    }.get(op, False)


def _compare_number(number: float, op: str, wanted: float) -> bool:
    return {
        "=": number == wanted,
        "!=": number != wanted,
        "<": number < wanted,
        "<=": number <= wanted,
        ">": number > wanted,
        ">=": number >= wanted,
    }.get(op, False)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0  # Go's strconv.ParseFloat error leaves 0


def _has_wildcard(key: str) -> bool:
    return bool(re.search(r"(?<!\\)[*?]", key))


def _pattern(glob: str) -> re.Pattern[str]:
    """tidwall/match's pattern: `*` any run, `?` one character, `\\` escapes the next."""
    out, i = [], 0
    while i < len(glob):
        char = glob[i]
        if char == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _unescape(key: str) -> str:
    return re.sub(r"\\(.)", r"\1", key)


def _unquote(text: str) -> str:
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:
        return text
