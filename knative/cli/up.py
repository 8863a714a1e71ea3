"""`knserve up`: the local serving plane in the foreground.

`--autoscaler-config` and `--features-config` take Knative's own ConfigMaps (`config-autoscaler`,
`config-features`) as a cluster has them, or just their `data` as a plain mapping; a value
Knative would refuse stops `knserve up` with one line and exit status 2.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click


class ConfigError(click.ClickException):
    """A configuration Knative would refuse: `Error: …` on one line, exit status 2 (usage)."""

    exit_code = 2


def configmap_data(path: Path, name: str) -> dict[str, Any]:
    """The `data` of the ConfigMap `name` in the YAML at `path` (Knative's file as shipped, or a
    file of several documents), or the file's plain mapping of keys."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    if not docs:
        return {}
    if not all(isinstance(d, dict) for d in docs):
        raise ValueError(f"{path}: write the {name} ConfigMap, or a mapping of its keys")
    maps = [d for d in docs if d.get("kind") == "ConfigMap"]
    if not maps:
        if len(docs) > 1:
            raise ValueError(f"{path}: several documents and no ConfigMap {name} among them")
        return docs[0]
    named = [d for d in maps if (d.get("metadata") or {}).get("name") == name]
    if len(named) != 1 and len(maps) != 1:
        raise ValueError(f"{path}: no single ConfigMap named {name}")
    data = (named or maps)[0].get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the ConfigMap's data must be a mapping of keys to values")
    return data


def pvc_mapping(items: Sequence[str]) -> dict[str, Path]:
    """`--pvc CLAIM=DIR` options as claim -> existing folder."""
    claims: dict[str, Path] = {}
    for item in items:
        claim, sep, folder = item.partition("=")
        claim = claim.strip()
        if not sep or not claim or not folder.strip():
            raise ValueError(f"--pvc {item!r}: write CLAIM=DIR, e.g. --pvc models=/srv/models")
        path = Path(folder.strip()).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"--pvc {item!r}: {path} is not a folder; create it or fix the path")
        claims[claim] = path
    return claims


def request_log_enabled(data: dict[str, Any]) -> bool:
    """Knative's config-observability `logging.enable-request-log` ("true"/"false", off unset)."""
    value = str(data.get("logging.enable-request-log", "false")).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(
            f"config-observability logging.enable-request-log is {value!r}; write true or false"
        )
    return value == "true"


def _show_engine_builds() -> None:
    """An engine's first start builds its environment (minutes): its progress is printed as
    plain lines, whatever the log level."""
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("building %(message)s"))
    builds = logging.getLogger("knserve.knative.supervisor.engine_env")
    builds.addHandler(progress)
    builds.setLevel(logging.INFO)
    builds.propagate = False


@click.command("up")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="state and logs (default: ~/.local/share/knserve)",
)
@click.option("--port", type=int, default=8080, show_default=True, help="the gateway's port")
@click.option(
    "--api-port", type=int, default=8081, show_default=True, help="the control API's port"
)
@click.option(
    "--broker-port", type=int, default=8082, show_default=True, help="the broker ingress's port"
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--domain",
    default="localhost",
    show_default=True,
    help="services are {name}.{namespace}.DOMAIN",
)
@click.option(
    "--token", envvar="KNSERVE_TOKEN", help="bearer token for the control API (needed off loopback)"
)
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--autoscaler-config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Knative's config-autoscaler ConfigMap YAML (or a mapping of its keys: stable-window: 60s, …)",
)
@click.option(
    "--features-config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Knative's config-features ConfigMap YAML, e.g. tag-header-based-routing: enabled",
)
@click.option(
    "--autoscaler",
    "autoscaler_overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="one config-autoscaler key, e.g. --autoscaler stable-window=6s (over the file)",
)
@click.option(
    "--zygote/--no-zygote",
    default=True,
    show_default=True,
    help="fork model-server replicas from a warm process (fast scale from zero)",
)
@click.option(
    "--template-budget-mib",
    type=click.IntRange(min=0),
    default=512,
    show_default=True,
    help="memory (USS) the revisions' warm templates may hold; 0: no templates",
)
@click.option(
    "--example", is_flag=True, help="serve KServe's sklearn iris example and print how to call it"
)
@click.option(
    "--pvc",
    "pvcs",
    multiple=True,
    metavar="CLAIM=DIR",
    help="serve storageUri pvc://CLAIM/… from the folder DIR (repeatable)",
)
@click.option(
    "--log-format",
    envvar="KNSERVE_LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line, for the plane and its replicas (for ELK, Loki …)",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="the gateway's access log, a line per request (default: the observability config, off)",
)
@click.option(
    "--observability-config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Knative's config-observability ConfigMap YAML, e.g. logging.enable-request-log: true",
)
@click.option(
    "--prometheus",
    "prometheus_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write a Prometheus config that discovers every replica and the plane (http_sd) to FILE",
)
@click.option(
    "--kubeconfig/--no-kubeconfig",
    "kubeconfig",
    default=True,
    show_default=True,
    help="merge a context 'knserve' for the control API into $KUBECONFIG (else ~/.kube/config)",
)
def cli(
    data_dir: Path | None,
    port: int,
    api_port: int,
    broker_port: int,
    host: str,
    domain: str,
    token: str | None,
    log_level: str,
    autoscaler_config: Path | None,
    features_config: Path | None,
    autoscaler_overrides: tuple[str, ...],
    zygote: bool,
    template_budget_mib: int,
    example: bool,
    pvcs: tuple[str, ...],
    log_format: str,
    access_log: bool | None,
    observability_config: Path | None,
    prometheus_file: Path | None,
    kubeconfig: bool,
) -> None:
    """Start the local serving plane: control API, gateway, controller, supervisor, autoscaler."""
    from knserve.knative.apiserver.autoscaler_config import config_from_map
    from knserve.knative.apiserver.client import default_data_dir
    from knserve.knative.apiserver.features import features_from_map
    from knserve.knative.plane import PlaneSettings, PortUnavailable, run_plane

    try:
        values: dict[str, Any] = {}
        if autoscaler_config is not None:
            values.update(configmap_data(autoscaler_config, "config-autoscaler"))
        for item in autoscaler_overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--autoscaler {item!r}: write KEY=VALUE, e.g. stable-window=6s")
            values[key.strip()] = value.strip()
        autoscaler = config_from_map(values)
        features = features_from_map(
            configmap_data(features_config, "config-features") if features_config else {}
        )
        claims = pvc_mapping(pvcs)
        if access_log is None:
            access_log = request_log_enabled(
                configmap_data(observability_config, "config-observability")
                if observability_config
                else {}
            )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from knserve.runtime.logformat import configure_logging

    configure_logging(log_level, log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe otherwise
    _show_engine_builds()
    try:
        settings = PlaneSettings(
            data_dir or default_data_dir(),
            host,
            port,
            api_port,
            domain,
            token,
            autoscaler,
            zygote,
            example,
            broker_port,
            features=features,
            pvc=claims,
            access_log=access_log,
            log_format=log_format,
            template_budget_bytes=template_budget_mib * 2**20,
        )
        if prometheus_file is not None:
            from knserve.knative.monitoring.scrape_config import write_scrape_config

            write_scrape_config(prometheus_file, f"http://{host}:{api_port}", token)
            print(f"Prometheus config: prometheus --config.file {prometheus_file}", flush=True)
        if kubeconfig:
            from knserve.knative.cli.kubeconfig import CONTEXT, write_context

            api_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            api_host = f"[{api_host}]" if ":" in api_host else api_host
            written = write_context(f"http://{api_host}:{api_port}", token)
            print(
                f"kubectl: context {CONTEXT} in {written} (kubectl --context {CONTEXT} get ksvc)",
                flush=True,
            )
        run_plane(settings)
    except PortUnavailable as exc:
        raise ConfigError(str(exc)) from None  # one line, exit status 2, nothing started
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
