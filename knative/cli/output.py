"""What the kn-style commands print: tables, `describe` blocks, `-o yaml|json`, and waiting.

Shared by `service`, `revision` and `route` so that every noun looks the same: the same AGE, the
same CONDITIONS column (`3 OK / 3`), the same failure messages, the same progress while waiting.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any

import click

from knserve.knative.apiserver.errors import ApiError

OUTPUT = click.Choice(["yaml", "json"])


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"knserve.{param.name}"] = value
    return value


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--target local|kube` and `--context`, read by `make_client` (not passed to `fn`)."""
    fn = click.option(
        "--context",
        expose_value=False,
        callback=_remember,
        help="a kubeconfig context (implies --target kube)",
    )(fn)
    return click.option(
        "--target",
        type=click.Choice(["local", "kube"]),
        default="local",
        envvar="KNSERVE_TARGET",
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="the local plane or the kubeconfig's cluster",
    )(fn)


api_option = click.option(
    "--api", envvar="KNSERVE_API", help="control API URL (default: the local plane)"
)


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-n/--namespace` and `--api` on a command, as `namespace` and `api` arguments, plus the
    target options."""
    fn = api_option(fn)
    return target_options(
        click.option("-n", "--namespace", default="default", show_default=True)(fn)
    )


def delete_command(group: click.Group, kind: Any, noun: str, doc: str) -> None:
    """Add kn's `delete NAME…` to `group`: delete each `kind` object, saying so as kn does."""

    @group.command("delete", help=doc)
    @click.argument("names", nargs=-1, required=True)
    @client_options
    @reports_api_errors
    def delete(names: tuple[str, ...], namespace: str, api: str | None) -> None:
        client = make_client(api)
        for name in names:
            client.delete(kind, namespace, name)
            click.echo(f"{noun} '{name}' successfully deleted in namespace '{namespace}'.")


def gateway_proxy(url: str, given: str | None = None) -> str | None:
    """The HTTP proxy that reaches `url`: for a host of the plane's domain (`*.localhost`, which
    this machine does not resolve to the gateway's port) the gateway, `given` or the running
    plane's (from its plane.json); None for any other URL."""
    from urllib.parse import urlparse

    if not (urlparse(url).hostname or "").endswith(".localhost"):
        return None
    if given:
        return given
    from knserve.knative.apiserver.client import default_data_dir

    record = default_data_dir() / "plane.json"
    if record.is_file():
        gateway = json.loads(record.read_text()).get("gateway")
        return str(gateway) if gateway else None
    return None


def make_client(api: str | None) -> Any:
    """The client of the target the command line chose: the local plane's API or a cluster."""
    from knserve.knative.kube.client import client_for

    meta = click.get_current_context().meta
    return client_for(meta.get("knserve.target") or "local", meta.get("knserve.context"), api)


def reports_api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An `ApiError` (from the plane or the client) becomes `Error: …` and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise click.ClickException(exc.message) from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def emit(obj: Any, output: str | None) -> bool:
    """Print `obj` as YAML or JSON when `-o` asked for it; say whether it did."""
    if output == "json":
        click.echo(json.dumps(obj, indent=2))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(obj, sort_keys=False).rstrip())
    return output is not None


def emit_list(items: list[dict[str, Any]], output: str | None, namespace: str, noun: str) -> bool:
    """A `list` command's common part: the items as `-o` asks, or kn's line when there are none.
    True when that is all there is to print; else the caller prints its table."""
    if emit({"apiVersion": "v1", "kind": "List", "items": items}, output):
        return True
    if not items:
        click.echo(f"No {noun} found in namespace '{namespace}'.")
        return True
    return False


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """`2026-11-25T10:00:00Z` → `5m`, kn's short age."""
    if not timestamp:
        return ""
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in conditions(obj) if c.get("type") == "Ready"), {})


def summary(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(CONDITIONS, READY, REASON) columns: `2 OK / 3`, `Unknown`, `Deploying`."""
    conds = conditions(obj)
    ok = sum(1 for c in conds if c.get("status") == "True")
    ready = ready_condition(obj)
    return f"{ok} OK / {len(conds)}", ready.get("status", "Unknown"), ready.get("reason", "")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        click.echo(
            "   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )


def describe_conditions(obj: dict[str, Any]) -> None:
    click.echo("Conditions:")
    listed = conditions(obj)
    # KServe's per-component types (PredictorConfigurationReady) are longer than Knative's
    width = max([24, *(len(c["type"]) + 2 for c in listed)])
    click.echo(f"  {'OK':<3}{'TYPE':<{width}}{'AGE':<6}REASON")
    for c in listed:
        mark = {"True": "++", "False": "!!"}.get(c.get("status", ""), "??")
        when = age(c.get("lastTransitionTime"))
        click.echo(f"  {mark:<3}{c['type']:<{width}}{when:<6}{c.get('reason', '')}")
        if c.get("message") and c.get("status") != "True":
            for line in str(c["message"]).splitlines():
                click.echo(f"        {line}")


def fields(rows: Sequence[tuple[str, Any]]) -> None:
    for key, value in rows:
        if value not in (None, ""):
            click.echo(f"{key + ':':<12}{value}")


@contextmanager
def spinner_free_progress() -> Iterator[Callable[[str], None]]:
    """Progress lines on stderr, each said once (no spinner: logs and CI stay readable)."""
    said: set[str] = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            click.echo(line, err=True)

    yield say


def wait_ready(get: Callable[[], dict[str, Any]], what: str, timeout: float) -> dict[str, Any]:
    """Poll until the object's status covers its generation and Ready is True (or False: fail).

    The control API is another process; polling it is the only signal the CLI has.
    """
    start = time.monotonic()
    with spinner_free_progress() as say:
        while True:
            obj = get()
            status = obj.get("status") or {}
            current = status.get("observedGeneration") == obj["metadata"].get("generation")
            ready = ready_condition(obj)
            if current:
                for cond in conditions(obj):
                    if cond.get("type") != "Ready" and cond.get("status") == "True":
                        say(f"  {cond['type']} OK")
                if ready.get("status") == "True":
                    say(f"{what} ready in {time.monotonic() - start:.1f}s")
                    return obj
                if ready.get("status") == "False":
                    raise click.ClickException(
                        f"{what} failed: {ready.get('reason', '')}: {ready.get('message', '')}"
                    )
                if ready.get("reason"):
                    say(
                        f"  waiting: {ready['reason']}"
                        + (f" ({ready['message']})" if ready.get("message") else "")
                    )
            if time.monotonic() - start > timeout:
                raise click.ClickException(
                    f"{what} not ready after {timeout:.0f}s: {ready.get('reason', 'no status yet')} "
                    f"{ready.get('message', '')}; raise --wait-timeout or check `describe`"
                )
            time.sleep(0.1)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
