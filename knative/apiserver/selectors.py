"""Kubernetes' label and field selectors, as the control API and the store apply them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from knserve.knative.apiserver.errors import BadRequest

_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\(([^)]*)\)\s*$")


def selector_matches(labels: dict[str, str], selector: str | None) -> bool:
    """Label selectors as Kubernetes reads them: `a=b`, `a==b`, `c!=d`, `e` (exists), `!f`
    (absent), and the set-based `g in (x,y)`, `h notin (x,y)`; terms joined by commas."""
    if not selector:
        return True
    # commas inside a set's parentheses do not separate terms
    for term in (t.strip() for t in re.split(r",(?![^(]*\))", selector) if t.strip()):
        in_set = _SET_TERM.match(term)
        if in_set:
            key, op, values = in_set.groups()
            members = {v.strip() for v in values.split(",") if v.strip()}
            if (labels.get(key) in members if key in labels else False) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("==" if "==" in term else "=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def label_equalities(selector: str | None) -> list[tuple[str, str]]:
    """The `key=value` (and `key==value`) terms of a label selector: what every match has."""
    found = []
    for term in (t.strip() for t in re.split(r",(?![^(]*\))", selector or "") if t.strip()):
        if "!=" in term or _SET_TERM.match(term) or "=" not in term:
            continue
        key, value = term.split("==" if "==" in term else "=", 1)
        if '"' not in key:  # a label key never has one; such a term is left to selector_matches
            found.append((key.strip(), value.strip()))
    return found


# The fields a field selector may name on a namespaced custom resource, as the API server has it.
FIELD_LABELS = ("metadata.name", "metadata.namespace")


def field_selector_terms(selector: str | None) -> list[tuple[str, str, str]]:
    """Parse a field selector (`metadata.name=hello,metadata.namespace!=x`; `=`, `==`, `!=`)
    into (field, operator, value) terms; BadRequest with the API server's message otherwise."""
    terms = []
    for term in (t.strip() for t in (selector or "").split(",") if t.strip()):
        for op in ("!=", "==", "="):
            if op in term:
                field, value = (part.strip() for part in term.split(op, 1))
                break
        else:
            raise BadRequest(f"invalid selector: '{selector}'; can't understand '{term}'")
        if field not in FIELD_LABELS:
            raise BadRequest(
                f"field label not supported: {field} (custom resources select on "
                f"{' and '.join(FIELD_LABELS)})"
            )
        terms.append((field, "!=" if op == "!=" else "=", value))
    return terms


def selects(
    label_selector: str | None, field_selector: str | None
) -> Callable[[dict[str, Any]], bool]:
    """A predicate for objects that match both selectors (the field selector checked now)."""
    terms = field_selector_terms(field_selector)

    def matches(obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        for field, op, value in terms:
            if (meta.get(field.removeprefix("metadata.")) == value) != (op == "="):
                return False
        return selector_matches(meta.get("labels") or {}, label_selector)

    return matches
