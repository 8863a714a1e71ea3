"""kn's `--traffic`, `--tag` and `--untag` flags applied to a Service's `spec.traffic` (pure).

The rules are kn's, so a user's muscle memory carries over:

- `--untag TAG` removes the tag; a target left with neither tag nor percent disappears.
- `--tag REV=TAG` (REV a revision name or `@latest`) tags the target that already routes to REV
  if it has no tag yet, else adds a 0 % target for REV with the tag.
- `--traffic REF=PCT` (REF a revision name, `@latest` or a tag) gives REF that percent. Once any
  `--traffic` is given the listed targets are the whole split: every other target drops to 0 %
  (and disappears unless it carries a tag).

The server validates the result (percents sum to 100, tags unique, revisions exist), so errors
here are only about the flags' own shape.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

LATEST = "@latest"


class TrafficFlagError(ValueError):
    """A flag is malformed; the message shows the right shape."""


def _pairs(values: Sequence[str], flag: str, shape: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        for item in value.split(","):
            ref, sep, right = item.strip().partition("=")
            if not sep or not ref or not right:
                raise TrafficFlagError(f"{flag} {item!r}: write it as {shape}")
            out.append((ref.strip(), right.strip()))
    return out


def _refers_to(target: dict[str, Any], ref: str) -> bool:
    if ref == LATEST:
        return bool(target.get("latestRevision")) and not target.get("tag")
    return target.get("revisionName") == ref and not target.get("tag")


def _target_for(ref: str) -> dict[str, Any]:
    if ref == LATEST:
        return {"latestRevision": True, "percent": 0}
    return {"revisionName": ref, "latestRevision": False, "percent": 0}


def edit_traffic(
    current: Sequence[dict[str, Any]] | None,
    traffic: Sequence[str] = (),
    tags: Sequence[str] = (),
    untags: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The new `spec.traffic` after kn's flags; `current` empty means 100 % to the latest."""
    targets = [copy.deepcopy(t) for t in current or [{"latestRevision": True, "percent": 100}]]
    for target in targets:
        target.setdefault("percent", 0)
    targets = _untag(targets, untags)
    _tag(targets, tags)
    if traffic:
        targets = _split(targets, _percents(traffic))
    for target in targets:
        if not target.get("latestRevision"):
            target.pop("latestRevision", None)
        target.pop("url", None)
    return targets


Targets = list[dict[str, Any]]


def _untag(targets: Targets, untags: Sequence[str]) -> Targets:
    """`--untag`: the tags removed; targets left with neither tag nor percent dropped."""
    for tag in untags:
        found = [t for t in targets if t.get("tag") == tag]
        if not found:
            known = ", ".join(sorted(t["tag"] for t in targets if t.get("tag"))) or "none"
            raise TrafficFlagError(f"--untag {tag}: no traffic target has that tag (tags: {known})")
        for target in found:
            del target["tag"]
            target.pop("url", None)
    return _kept(targets) or targets[:1]


def _tag(targets: Targets, tags: Sequence[str]) -> None:
    """`--tag`: the untagged target of each revision tagged, or a 0 % one added with the tag."""
    for ref, tag in _pairs(tags, "--tag", "REVISION=TAG or @latest=TAG"):
        if any(t.get("tag") == tag for t in targets):
            raise TrafficFlagError(
                f"--tag {ref}={tag}: the tag {tag!r} is in use; --untag it first"
            )
        untagged = next((t for t in targets if _refers_to(t, ref)), None)
        if untagged is None:
            untagged = _target_for(ref)
            targets.append(untagged)
        untagged["tag"] = tag


def _percents(traffic: Sequence[str]) -> dict[str, int]:
    """`--traffic`'s REF=PERCENT pairs, each a whole number from 0 to 100."""
    split: dict[str, int] = {}
    for ref, pct in _pairs(
        traffic, "--traffic", "REVISION=PERCENT, @latest=PERCENT or TAG=PERCENT"
    ):
        try:
            split[ref] = int(pct.rstrip("%"))
        except ValueError:
            raise TrafficFlagError(
                f"--traffic {ref}={pct}: the percent must be a whole number"
            ) from None
        if not 0 <= split[ref] <= 100:
            raise TrafficFlagError(f"--traffic {ref}={pct}: the percent must be 0 to 100")
    return split


def _split(targets: Targets, split: dict[str, int]) -> Targets:
    """The listed targets (by tag, else by revision) get their percent, the rest 0 %; targets
    left with neither tag nor percent are dropped."""
    for target in targets:
        target["percent"] = 0
    for ref, percent in split.items():
        found = next((t for t in targets if t.get("tag") == ref), None) or next(
            (t for t in targets if _refers_to(t, ref)), None
        )
        if found is None:
            found = _target_for(ref)
            targets.append(found)
        found["percent"] = percent
    return _kept(targets)


def _kept(targets: Targets) -> Targets:
    """The targets that still mean something: a tag or a percent."""
    return [t for t in targets if t.get("tag") or t.get("percent")]
