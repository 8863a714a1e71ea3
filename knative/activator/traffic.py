"""Traffic: which revision serves a request, decided from a Route's targets and the request's Host.

A Route (`RouteSpec`) names a namespace, a route name and its traffic targets, each a revision with a
percent and an optional tag (revision names already resolved by the controller). Requests reach it by:

- its host `{route}.{namespace}.{domain}` (and the cluster-local `{route}.{namespace}.svc.cluster.local`
  Knative gives every Route): split among the targets by percent;
- a tag host `{tag}-{route}.{namespace}.{domain}`: always the tagged revision, even at 0 percent;
- the `Knative-Serving-Tag: {tag}` header on the route's host: the tagged revision; an unknown tag falls
  back to the percent split, as Knative's header-based routing does. Knative honours the header only
  with its `tag-header-based-routing` feature enabled: the gateway passes it here only then.

The split is smooth weighted round-robin (the algorithm nginx uses for upstream weights): every pick adds
each target's percent to its running credit, takes the target with the most credit and charges it the
total (100). It is deterministic and exact: in every run of 100 consecutive picks each target is chosen
exactly `percent` times, and the picks are spread out rather than bunched (80/20 goes A A A A B ...),
so a split of 80/20 over 1,000 requests is 800/200, never "within noise". Random choice would need
thousands of requests to stay inside ±5 %.

`RouteTable` maps every host a route answers to what it means, so resolving a request is one dict
lookup plus, for a split, one pass over the targets. It is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from knserve.knative.apiserver.naming import CLUSTER_LOCAL_DOMAIN, hostname


@dataclass(frozen=True)
class TrafficTarget:
    """One entry of a Route's traffic: a revision, its share in percent, and an optional tag."""

    revision: str
    percent: int
    tag: str | None = None


@dataclass(frozen=True)
class RouteSpec:
    """A Route as the gateway needs it: where it lives and its resolved traffic targets."""

    namespace: str
    name: str
    targets: tuple[TrafficTarget, ...]

    def __post_init__(self) -> None:
        for i, target in enumerate(self.targets):
            if target.percent < 0 or target.percent > 100:
                raise ValueError(
                    f"Invalid: route {self.namespace}/{self.name} spec.traffic[{i}].percent is "
                    f"{target.percent}, it must be between 0 and 100"
                )
        total = sum(target.percent for target in self.targets)
        if self.targets and total != 100:
            raise ValueError(
                f"Invalid: route {self.namespace}/{self.name} spec.traffic percents sum to {total}, "
                "they must sum to 100"
            )


@dataclass(frozen=True)
class Destination:
    """Where one request goes: a revision of a namespace, chosen through `tag` (None for the split)."""

    namespace: str
    revision: str
    tag: str | None = None


class WeightedRoundRobin:
    """Smooth weighted round-robin over (key, weight) pairs; exact over every window of sum(weights).

    Pairs with weight 0 are never picked. With no positive weight `pick` returns None.
    """

    __slots__ = ("_credit", "_keys", "_total", "_weights")

    def __init__(self, weighted: Iterable[tuple[str, int]]) -> None:
        pairs = [(key, weight) for key, weight in weighted if weight > 0]
        self._keys = [key for key, _ in pairs]
        self._weights = [weight for _, weight in pairs]
        self._credit = [0] * len(pairs)
        self._total = sum(self._weights)

    def pick(self) -> str | None:
        """The next key of the sequence."""
        keys = self._keys
        if len(keys) == 1:
            return keys[0]
        if not keys:
            return None
        credit = self._credit
        weights = self._weights
        best = 0
        for i in range(len(keys)):
            credit[i] += weights[i]
            if credit[i] > credit[best]:
                best = i
        credit[best] -= self._total
        return keys[best]


class _RouteEntry:
    """A route's compiled form: the split, and the revision behind each tag."""

    __slots__ = ("route", "split", "tags")

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self.split = WeightedRoundRobin((t.revision, t.percent) for t in route.targets)
        self.tags = {t.tag: t.revision for t in route.targets if t.tag}


def normalize_host(host: str) -> str:
    """A Host header as a lookup key: lower case, without port or a trailing dot."""
    host = host.strip().lower()
    colon = host.rfind(":")
    if colon >= 0 and "]" not in host[colon:]:
        host = host[:colon]
    return host.rstrip(".")


def route_hosts(route: RouteSpec, domain: str) -> dict[str, str | None]:
    """Every host that reaches `route`, mapped to the tag it selects (None: the percent split)."""
    hosts: dict[str, str | None] = {}
    for suffix in (domain, CLUSTER_LOCAL_DOMAIN):
        hosts[hostname(route.name, route.namespace, suffix)] = None
        for target in route.targets:
            if target.tag:
                hosts[hostname(route.name, route.namespace, suffix, target.tag)] = target.tag
    return hosts


class RouteTable:
    """All routes the gateway serves, indexed by host."""

    def __init__(self, domain: str = "localhost") -> None:
        self.domain = domain.strip(".").lower()
        self._routes: dict[tuple[str, str], _RouteEntry] = {}
        self._hosts: dict[str, tuple[_RouteEntry, str | None]] = {}

    def set_route(self, route: RouteSpec) -> None:
        """Add or replace a route; the split restarts from the new percents."""
        self.remove_route(route.namespace, route.name)
        entry = _RouteEntry(route)
        self._routes[(route.namespace, route.name)] = entry
        for host, tag in route_hosts(route, self.domain).items():
            # A tag host of one route may shadow another route's name (tag "a" of route "b-c" and a
            # route "a-b-c"): the route's own name wins, as a cluster's DNS would give it to the Route.
            if host in self._hosts and tag is not None:
                continue
            self._hosts[host] = (entry, tag)

    def remove_route(self, namespace: str, name: str) -> None:
        """Forget a route and all its hosts; unknown routes are ignored."""
        entry = self._routes.pop((namespace, name), None)
        if entry is None:
            return
        for host in [h for h, (e, _) in self._hosts.items() if e is entry]:
            del self._hosts[host]
        # Restore hosts this route had shadowed.
        for other in self._routes.values():
            for host, tag in route_hosts(other.route, self.domain).items():
                self._hosts.setdefault(host, (other, tag))

    def routes(self) -> list[RouteSpec]:
        """The routes, in the order they were set."""
        return [entry.route for entry in self._routes.values()]

    def resolve(self, host: str, tag_header: str | None = None) -> Destination | None:
        """The destination of a request to `host` (already normalized) with an optional tag header.

        None when the host names no route. A Destination with revision "" means the route exists but has
        no target with traffic (only tags, or none yet).
        """
        found = self._hosts.get(host)
        if found is None:
            return None
        entry, tag = found
        if tag is None and tag_header:
            tag_revision = entry.tags.get(tag_header)
            if tag_revision is not None:
                return Destination(entry.route.namespace, tag_revision, tag_header)
        if tag is not None:
            return Destination(entry.route.namespace, entry.tags[tag], tag)
        return Destination(entry.route.namespace, entry.split.pick() or "")

    def route_of(self, host: str) -> RouteSpec | None:
        """The route `host` (already normalized) reaches; None when it reaches none."""
        found = self._hosts.get(host)
        return found[0].route if found is not None else None

    def unknown_host_message(self, host: str) -> str:
        """Why `host` reaches nothing, and how to name a route that exists."""
        known = sorted(h for h in self._hosts if h.endswith("." + self.domain))
        given = f"No route serves host {host!r}" if host else "The request has no Host header"
        how = f"name a route as {{route}}.{{namespace}}.{self.domain} or {{tag}}-{{route}}.{{namespace}}.{self.domain}"
        if not known:
            return f"{given}; no routes exist yet: create a Service, then {how}"
        shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        return (
            f"{given}; {how} (for example with curl -H 'Host: {known[0]}'). Hosts served: {shown}"
        )
