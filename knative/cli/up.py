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
def cli(data_dir: Path | None, port: int, api_port: int, host: str, domain: str, token: str | None,
        log_level: str) -> None:  # fmt: skip
    """Start the local serving plane: control API, gateway, controller, supervisor."""
    from knserve.knative.plane import PlaneSettings, default_data_dir, run_plane

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run_plane(
            PlaneSettings(data_dir or default_data_dir(), host, port, api_port, domain, token)
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
