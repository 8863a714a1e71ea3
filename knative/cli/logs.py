"""`knserve logs NAME`: the logs of an InferenceService, a Service or a Revision, as kubectl shows
a Deployment's pods' (`kubectl logs -l … --prefix`).

NAME is looked up as an InferenceService, then a Service, then a Revision, in the namespace; an
InferenceService's components (predictor, transformer, explainer) are its Services, and
`-c/--component` picks one. Every replica of every revision found is read from the plane's log
files (`knserve.knative.cli.replica_logs`), merged by time, each line prefixed with its replica,
`[{revision}-{index}]`. `-f` keeps printing what is written, from replicas that start later too,
until interrupted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from knserve.knative.apiserver.errors import ApiError
from knserve.knative.apiserver.kinds import named
from knserve.knative.cli.output import client_options, make_client, reports_api_errors
from knserve.knative.cli.replica_logs import ReplicaLog, merged, replica_files

ISVCS, SERVICES, REVISIONS = named("inferenceservices"), named("services"), named("revisions")
SERVICE_LABEL = "serving.knative.dev/service"
COMPONENTS = ("predictor", "transformer", "explainer")
FOLLOW_POLL_SECONDS = 0.2  # how often -f looks for new lines and new replicas


def _get(client: Any, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.get(kind, namespace, name)
        return found
    except ApiError as exc:
        if exc.code == 404:
            return None
        raise


def _service_revisions(client: Any, namespace: str, service: str) -> list[str]:
    revisions = client.list(REVISIONS, namespace, f"{SERVICE_LABEL}={service}")
    return sorted(r["metadata"]["name"] for r in revisions)


def revisions_of(client: Any, namespace: str, name: str, component: str | None) -> list[str]:
    """The revisions whose replicas NAME means (see the module docstring)."""
    isvc = _get(client, ISVCS, namespace, name)
    if isvc is not None:
        declared = [c for c in COMPONENTS if (isvc.get("spec") or {}).get(c)]
        if component is not None and component not in declared:
            raise click.ClickException(
                f"InferenceService {namespace}/{name} has no {component}; its components are "
                f"{', '.join(declared)}"
            )
        chosen = [component] if component else declared
        return [r for c in chosen for r in _service_revisions(client, namespace, f"{name}-{c}")]
    if component is not None:
        raise click.ClickException(
            f"-c/--component picks an InferenceService's component; {name!r} is not an "
            f"InferenceService in namespace {namespace}"
        )
    if _get(client, SERVICES, namespace, name) is not None:
        return _service_revisions(client, namespace, name)
    if _get(client, REVISIONS, namespace, name) is not None:
        return [name]
    raise click.ClickException(
        f"no InferenceService, Service or Revision named {name!r} in namespace {namespace}; "
        f"see `knserve service list -n {namespace}`"
    )


def _since_seconds(text: str) -> float:
    from knserve.knative.apiserver.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 30s, 5m or 1h") from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r}: give a duration above zero, e.g. 5m")
    return seconds


@click.command("logs")
@click.argument("name")
@click.option(
    "-c", "--component", type=click.Choice(COMPONENTS), help="an InferenceService's component"
)
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until interrupted")
@click.option("--since", help="only lines newer than this duration, e.g. 10m")
@click.option("--tail", type=int, default=-1, help="the last N lines of each replica (-1: all)")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="the plane's data dir (default: knserve up's)",
)
@client_options
@reports_api_errors
def cli(
    name: str,
    component: str | None,
    follow: bool,
    since: str | None,
    tail: int,
    data_dir: Path | None,
    namespace: str,
    api: str | None,
) -> None:
    """Print the logs of an InferenceService's, Service's or Revision's replicas."""
    from knserve.knative.apiserver.client import default_data_dir

    start = time.time() - _since_seconds(since) if since else None
    revisions = revisions_of(make_client(api), namespace, name, component)
    log_dir = (data_dir or default_data_dir()) / "logs"
    logs: dict[Path, ReplicaLog] = {}

    def discover() -> list[ReplicaLog]:
        found = []
        for revision in revisions:
            for index, path in replica_files(log_dir, namespace, revision):
                if path not in logs:
                    logs[path] = ReplicaLog(f"{revision}-{index}", path)
                    found.append(logs[path])
        return found

    discover()
    if not logs and not follow:
        click.echo(
            f"No logs yet for {name} in namespace {namespace}: no replica of "
            f"{', '.join(revisions) or 'it'} has started (a revision at zero has none)",
            err=True,
        )
        return
    for line in merged(list(logs.values()), start, tail if tail >= 0 else None):
        click.echo(line)
    if not follow:
        return
    try:
        while True:
            time.sleep(FOLLOW_POLL_SECONDS)
            fresh = discover()  # replicas started since: printed from their first line
            for line in merged(fresh, start):
                click.echo(line)
            current = [log for log in logs.values() if log not in fresh]
            for line in merged(current):
                click.echo(line)
    except KeyboardInterrupt:
        pass
