"""`knserve event send`: one CloudEvent (binary mode) to a broker, a service or a URL.

Flags as `kn event send` has them (`--to`, `-t/--type`, `-s/--source`, `-i/--id`,
`-f/--field`, `--raw-field`) plus `--broker`, `--data JSON|@file` and `--extension k=v`. A
destination under the plane's domain (`http://iris.default.localhost`) is reached through the
gateway as an HTTP proxy, as replicas reach each other, since this machine cannot resolve it.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import click

from knserve.knative.apiserver.kinds import by_kind
from knserve.knative.cli.output import (
    client_options,
    gateway_proxy,
    make_client,
    reports_api_errors,
)
from knserve.knative.cli.trigger import SINK_KINDS, parse_sink

DEFAULT_TYPE = "dev.knative.cli.plugin.event.generic"  # kn event's default
DEFAULT_SOURCE = "knserve/event"
_NAME = re.compile(r"[a-z0-9]+")  # CloudEvents attribute names


def _destination(value: str) -> dict[str, Any]:
    """`--to`: a URL, kn's sink syntax (ksvc:NAME), or kn event's Kind:APIVersion:Name."""
    parts = value.split(":")
    if len(parts) == 3 and parts[0] not in SINK_KINDS and not value.startswith(("http:", "https:")):
        kind, api_version, name = parts
        return {"ref": {"apiVersion": api_version, "kind": kind, "name": name}}
    return parse_sink(value, "--to")


def _url(client: Any, destination: dict[str, Any], namespace: str) -> str:
    if destination.get("uri"):
        return str(destination["uri"])
    ref = destination["ref"]
    kind = by_kind(ref["apiVersion"], ref["kind"])
    if kind is None or ref["kind"] not in ("Service", "Broker", "InferenceService"):
        raise click.BadParameter(
            f"{ref['apiVersion']} {ref['kind']} is not addressable here; send to a Knative "
            "Service, a Broker, an InferenceService or a URL",
            param_hint="--to",
        )
    obj = client.get(kind, ref.get("namespace") or namespace, ref["name"])
    status = obj.get("status") or {}
    url = (status.get("address") or {}).get("url") or status.get("url")
    if not url:
        raise click.ClickException(
            f"{ref['kind']} '{ref['name']}' has no address yet (not ready); check "
            f"`knserve {ref['kind'].lower()} describe {ref['name']}`"
        )
    return str(url)


def _set_field(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    target = data
    for key in keys[:-1]:
        child = target.setdefault(key, {})
        if not isinstance(child, dict):
            raise click.BadParameter(f"{path}: {key} is already a value", param_hint="--field")
        target = child
    target[keys[-1]] = value


def _data(
    data: str | None, fields: tuple[str, ...], raw_fields: tuple[str, ...], content_type: str
) -> bytes:
    if data is not None and (fields or raw_fields):
        raise click.UsageError("give --data, or --field/--raw-field to build it, not both")
    if data is not None:
        if data.startswith("@") and not Path(data[1:]).is_file():
            raise click.BadParameter(f"{data}: no such file", param_hint="--data")
        body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
        if "json" in content_type:
            try:
                json.loads(body)
            except ValueError as exc:
                raise click.BadParameter(
                    f"is not valid JSON ({exc}); give --content-type for other data",
                    param_hint="--data",
                ) from None
        return body
    built: dict[str, Any] = {}
    for flag, values, parse in (("--field", fields, True), ("--raw-field", raw_fields, False)):
        for item in values:
            path, sep, value = item.partition("=")
            if not sep or not path:
                raise click.BadParameter(
                    f"{item!r}: write PATH=VALUE, e.g. person.name=Joe", param_hint=flag
                )
            parsed: Any = value
            if parse:
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = value
            _set_field(built, path, parsed)
    return json.dumps(built).encode()


@click.group("event")
def cli() -> None:
    """Send a CloudEvent to a broker or a URL."""


@cli.command("send")
@click.option("--broker", help="send to this broker's address")
@click.option(
    "--to", "to", help="or: a URL, ksvc:NAME, broker:NAME, isvc:NAME or Kind:APIVersion:Name"
)
@click.option("-t", "--type", "ce_type", default=DEFAULT_TYPE, show_default=True)
@click.option("-s", "--source", "ce_source", default=DEFAULT_SOURCE, show_default=True)
@click.option("-i", "--id", "ce_id", help="the event id (default: a new UUID)")
@click.option("--data", help="the data: JSON text, or @FILE")
@click.option(
    "-f",
    "--field",
    "fields",
    multiple=True,
    help="PATH=VALUE into JSON data (VALUE as JSON if it parses)",
)
@click.option(
    "--raw-field", "raw_fields", multiple=True, help="PATH=VALUE into JSON data, VALUE as a string"
)
@click.option("--content-type", default="application/json", show_default=True)
@click.option(
    "-e", "--extension", "extensions", multiple=True, help="NAME=VALUE, a CloudEvents extension"
)
@click.option(
    "--gateway", envvar="KNSERVE_GATEWAY", help="the plane's gateway (default: the running plane's)"
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds")
@client_options
@reports_api_errors
def send(
    broker: str | None,
    to: str | None,
    ce_type: str,
    ce_source: str,
    ce_id: str | None,
    data: str | None,
    fields: tuple[str, ...],
    raw_fields: tuple[str, ...],
    content_type: str,
    extensions: tuple[str, ...],
    gateway: str | None,
    timeout: float,
    namespace: str,
    api: str | None,
) -> None:
    """Send one CloudEvent in binary mode, and print what came back."""
    import httpx

    if (broker is None) == (to is None):
        raise click.UsageError("give --broker NAME or --to DESTINATION (one of them)")
    destination = (
        {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": broker}}
        if broker is not None
        else _destination(str(to))
    )
    url = (
        str(destination["uri"])
        if destination.get("uri")
        else _url(make_client(api), destination, namespace)
    )
    body = _data(data, fields, raw_fields, content_type)
    event_id = ce_id or str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": ce_source,
        "ce-type": ce_type,
        "content-type": content_type,
    }
    for item in extensions:
        name, sep, value = item.partition("=")
        if not sep or not _NAME.fullmatch(name) or name in ("specversion", "id", "source", "type"):
            raise click.BadParameter(
                f"{item!r}: write NAME=VALUE with NAME of lowercase letters and digits, not one of "
                "specversion, id, source, type",
                param_hint="--extension",
            )
        headers[f"ce-{name}"] = value
    proxy = gateway_proxy(url, gateway)
    try:
        with httpx.Client(proxy=proxy, trust_env=False, timeout=timeout) as http:
            response = http.post(url, headers=headers, content=body)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if response.status_code >= 300:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        reason = answer.get("error") if isinstance(answer, dict) else None
        reason = reason or response.text
        raise click.ClickException(f"{url} answered {response.status_code}: {reason}".rstrip(": "))
    click.echo(f"Event '{event_id}' sent to {url} ({response.status_code}).")
    if response.content:
        for key, value in response.headers.items():
            if key.lower().startswith("ce-"):
                click.echo(f"{key}: {value}")
        click.echo(response.text)
