"""`knserve up`: the local serving plane in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path

import click


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
    help="YAML of Knative's config-autoscaler keys (stable-window: 60s, …)",
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
    "--example", is_flag=True, help="serve KServe's sklearn iris example and print how to call it"
)
def cli(data_dir: Path | None, port: int, api_port: int, broker_port: int, host: str, domain: str, token: str | None,
        log_level: str, autoscaler_config: Path | None, autoscaler_overrides: tuple[str, ...],
        zygote: bool, example: bool) -> None:  # fmt: skip
    """Start the local serving plane: control API, gateway, controller, supervisor, autoscaler."""
    from knserve.knative.autoscaler import config_from_map
    from knserve.knative.plane import PlaneSettings, default_data_dir, run_plane

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe otherwise
    try:
        values: dict[str, str] = {}
        if autoscaler_config is not None:
            import yaml

            loaded = yaml.safe_load(autoscaler_config.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{autoscaler_config}: write a mapping of config-autoscaler keys")
            values.update(loaded.get("data", loaded))  # a ConfigMap or its data
        for item in autoscaler_overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--autoscaler {item!r}: write KEY=VALUE, e.g. stable-window=6s")
            values[key.strip()] = value.strip()
        settings = PlaneSettings(data_dir or default_data_dir(), host, port, api_port, domain,
                                 token, config_from_map(values), zygote, example, broker_port)  # fmt: skip
        run_plane(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
