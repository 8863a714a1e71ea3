"""`knserve trigger create|update|list|describe|delete`, with kn's flags.

Also home to what `broker` and `event send` share with it: kn's sink syntax (`ksvc:NAME`,
`broker:NAME`, `isvc:NAME`, a URL, or a bare name for a Knative Service) and the
`spec.delivery` flags (`--dl-sink`, `--retry`, `--backoff-policy`, `--backoff-delay`, …), checked
here with the broker's own validation so a typo fails before it reaches the plane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from knserve.knative.apiserver.kinds import named
from knserve.knative.cli.output import (
    OUTPUT,
    age,
    client_options,
    delete_command,
    describe_conditions,
    emit,
    emit_list,
    fields,
    make_client,
    reports_api_errors,
    summary,
    table,
)

TRIGGERS = named("triggers")

# kn's sink prefixes (plus isvc for KServe): prefix -> (apiVersion, kind)
SINK_KINDS = {
    "ksvc": ("serving.knative.dev/v1", "Service"),
    "broker": ("eventing.knative.dev/v1", "Broker"),
    "isvc": ("serving.kserve.io/v1beta1", "InferenceService"),
}
PREFIX_OF = {kind: prefix for prefix, (_, kind) in SINK_KINDS.items()}


def parse_sink(value: str, flag: str = "--sink") -> dict[str, Any]:
    """kn's sink syntax as a Knative Destination: `ksvc:NAME[:NAMESPACE]`, `broker:NAME`,
    `isvc:NAME`, `http(s)://…` (a uri), or a bare NAME (a Knative Service)."""
    if value.startswith(("http://", "https://")):
        return {"uri": value}
    prefix, sep, rest = value.partition(":")
    if not sep:
        prefix, rest = "ksvc", value
    if prefix not in SINK_KINDS or not rest or rest.count(":") > 1:
        raise click.BadParameter(
            f"{value!r} is not a sink; write ksvc:NAME, broker:NAME, isvc:NAME (each with an "
            "optional :NAMESPACE), a bare service NAME, or an http(s):// URL",
            param_hint=flag,
        )
    name, _, namespace = rest.partition(":")
    api_version, kind = SINK_KINDS[prefix]
    ref = {"apiVersion": api_version, "kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return {"ref": ref}


def show_sink(destination: dict[str, Any] | None) -> str:
    """A Destination the way kn prints it: `ksvc:iris`, `broker:default`, or the URI."""
    if not destination:
        return ""
    ref, uri = destination.get("ref"), destination.get("uri")
    if ref:
        text = (
            f"{PREFIX_OF.get(ref.get('kind', ''), ref.get('kind', '?').lower())}:{ref.get('name')}"
        )
        if ref.get("namespace"):
            text += f":{ref['namespace']}"
        return text + (f" (uri {uri})" if uri else "")
    return str(uri or "")


def delivery_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """kn's `spec.delivery` flags."""
    options = [
        click.option(
            "--dl-sink",
            "--dead-letter-sink",
            "dl_sink",
            help="where events go after the last retry (a sink: ksvc:NAME, URL, …)",
        ),
        click.option("--retry", type=int, help="retries after the first attempt"),
        click.option(
            "--backoff-policy",
            type=click.Choice(["linear", "exponential"]),
            help="delay × n (linear) or delay × 2ⁿ (exponential) before the n-th retry",
        ),
        click.option("--backoff-delay", help="ISO 8601 base delay, e.g. PT0.2S"),
        click.option("--retry-after-max", help="cap on a subscriber's Retry-After, e.g. PT30S"),
        click.option("--timeout", "delivery_timeout", help="per attempt, ISO 8601, e.g. PT10S"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def apply_delivery_flags(
    delivery: dict[str, Any] | None, opts: dict[str, Any]
) -> dict[str, Any] | None:
    """`spec.delivery` changed as the flags say; validated (raises ValueError with the fix)."""
    from knserve.eventing.backoff import DeliverySpec

    out = dict(delivery or {})
    if opts.get("dl_sink"):
        out["deadLetterSink"] = parse_sink(opts["dl_sink"], "--dl-sink")
    for option, key in (
        ("retry", "retry"),
        ("backoff_policy", "backoffPolicy"),
        ("backoff_delay", "backoffDelay"),
        ("retry_after_max", "retryAfterMax"),
        ("delivery_timeout", "timeout"),
    ):
        if opts.get(option) is not None:
            out[key] = opts[option]
    if not out:
        return None
    DeliverySpec.from_spec(out)
    return out


def _filters(current: dict[str, str], values: Sequence[str]) -> dict[str, str]:
    """`--filter k=v` sets, `--filter k-` removes (kn's syntax)."""
    out = dict(current)
    for value in values:
        if value.endswith("-") and "=" not in value:
            out.pop(value[:-1], None)
            continue
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{value!r}: write ATTRIBUTE=VALUE (e.g. type=dev.knative.foo), or ATTRIBUTE- to "
                "remove",
                param_hint="--filter",
            )
        out[key] = val
    return out


def _check_filters(spec: dict[str, Any]) -> None:
    from knserve.eventing.filters import compile_filters

    compile_filters((spec.get("filter") or {}).get("attributes"), spec.get("filters"))


@click.group("trigger")
def cli() -> None:
    """Triggers: create, update, list, describe, delete."""


@cli.command("create")
@click.argument("name")
@click.option(
    "--broker", default="default", show_default=True, help="the broker to take events from"
)
@click.option("-s", "--sink", required=True, help="ksvc:NAME, broker:NAME, isvc:NAME or a URL")
@click.option(
    "--filter", "filters", multiple=True, help="ATTRIBUTE=VALUE exact match (repeat to AND)"
)
@delivery_options
@click.option("-o", "--output", type=OUTPUT, help="print the created object")
@client_options
@reports_api_errors
def create(
    name: str,
    broker: str,
    sink: str,
    filters: tuple[str, ...],
    namespace: str,
    api: str | None,
    output: str | None,
    **opts: Any,
) -> None:
    """Create a trigger that sends a broker's matching events to a sink."""
    spec: dict[str, Any] = {"broker": broker, "subscriber": parse_sink(sink)}
    attributes = _filters({}, filters)
    if attributes:
        spec["filter"] = {"attributes": attributes}
    delivery = apply_delivery_flags(None, opts)
    if delivery:
        spec["delivery"] = delivery
    _check_filters(spec)
    trigger = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    created = make_client(api).create(TRIGGERS, trigger)
    if not emit(created, output):
        click.echo(f"Trigger '{name}' successfully created in namespace '{namespace}'.")


@cli.command("update")
@click.argument("name")
@click.option("--broker", help="the broker (cannot change; given to check)")
@click.option("-s", "--sink", help="a new sink")
@click.option(
    "--filter", "filters", multiple=True, help="ATTRIBUTE=VALUE to set, ATTRIBUTE- to remove"
)
@delivery_options
@click.option("-o", "--output", type=OUTPUT, help="print the updated object")
@client_options
@reports_api_errors
def update(
    name: str,
    broker: str | None,
    sink: str | None,
    filters: tuple[str, ...],
    namespace: str,
    api: str | None,
    output: str | None,
    **opts: Any,
) -> None:
    """Change a trigger's sink, filters or delivery."""
    client = make_client(api)
    trigger = client.get(TRIGGERS, namespace, name)
    trigger.pop("status", None)
    spec = trigger.setdefault("spec", {})
    if broker and broker != spec.get("broker"):
        raise click.UsageError(
            f"trigger '{name}' takes events from broker '{spec.get('broker')}'; a trigger's broker "
            f"cannot change: delete it and create it again with --broker {broker}"
        )
    if sink:
        spec["subscriber"] = parse_sink(sink)
    if filters:
        attributes = _filters((spec.get("filter") or {}).get("attributes") or {}, filters)
        if attributes:
            spec["filter"] = {"attributes": attributes}
        else:
            spec.pop("filter", None)
    delivery = apply_delivery_flags(spec.get("delivery"), opts)
    if delivery:
        spec["delivery"] = delivery
    _check_filters(spec)
    updated = client.replace(TRIGGERS, trigger)
    if not emit(updated, output):
        click.echo(f"Trigger '{name}' updated in namespace '{namespace}'.")


@cli.command("list")
@click.option("--broker", help="only this broker's triggers")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_triggers(broker: str | None, namespace: str, api: str | None, output: str | None) -> None:
    """List triggers with their broker, sink and readiness."""
    items = [
        t
        for t in make_client(api).list(TRIGGERS, namespace)
        if broker is None or (t.get("spec") or {}).get("broker") == broker
    ]
    if emit_list(items, output, namespace, "triggers"):
        return
    rows = [
        (
            t["metadata"]["name"],
            t["spec"].get("broker", ""),
            show_sink(t["spec"].get("subscriber")),
            age(t["metadata"].get("creationTimestamp")),
            *summary(t),
        )
        for t in items
    ]
    table(("NAME", "BROKER", "SINK", "AGE", "CONDITIONS", "READY", "REASON"), rows)


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a trigger: broker, filters, sink (and the URL it resolved to), delivery, conditions."""
    trigger = make_client(api).get(TRIGGERS, namespace, name)
    if emit(trigger, output):
        return
    spec, status = trigger.get("spec") or {}, trigger.get("status") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(trigger["metadata"].get("creationTimestamp"))),
            ("Broker", spec.get("broker")),
        ]
    )
    attributes = (spec.get("filter") or {}).get("attributes") or {}
    if attributes or spec.get("filters"):
        click.echo("Filter:")
        for key, value in attributes.items():
            click.echo(f"  {key:<10}{value}")
        for item in spec.get("filters") or []:
            click.echo(f"  {item}")
    click.echo("Sink:")
    click.echo(f"  {show_sink(spec.get('subscriber'))}")
    if status.get("subscriberUri"):
        click.echo(f"  URI:      {status['subscriberUri']}")
    describe_delivery(spec.get("delivery"), status.get("deadLetterSinkUri"))
    click.echo()
    describe_conditions(trigger)


def describe_delivery(delivery: dict[str, Any] | None, dead_letter_uri: str | None) -> None:
    if not delivery:
        return
    click.echo("Delivery:")
    for key, label in (
        ("retry", "Retry"),
        ("backoffPolicy", "Policy"),
        ("backoffDelay", "Delay"),
        ("retryAfterMax", "RetryAfterMax"),
        ("timeout", "Timeout"),
    ):
        if delivery.get(key) is not None:
            click.echo(f"  {label + ':':<15}{delivery[key]}")
    if delivery.get("deadLetterSink"):
        resolved = f" ({dead_letter_uri})" if dead_letter_uri else ""
        click.echo(f"  {'DeadLetterSink:':<15}{show_sink(delivery['deadLetterSink'])}{resolved}")


delete_command(cli, TRIGGERS, "Trigger", "Delete triggers (their undelivered events are dropped).")
