"""`knserve dashboard`: the URL of the plane's built-in dashboard, opened in a browser.

The page is served by the control API at `/dashboard` (`knserve.knative.monitoring.dashboard`);
this finds the running plane's control API as every other command does (`--api`, `$KNSERVE_API`,
or what `knserve up` recorded), checks that it answers, prints the URL and opens it unless
`--no-open` (or no browser can be started, as on a server).
"""

from __future__ import annotations

import click
import httpx


@click.command("dashboard")
@click.option("--api", envvar="KNSERVE_API", help="the control API (default: the running plane)")
@click.option("--open/--no-open", "open_browser", default=True, show_default=True)
def cli(api: str | None, open_browser: bool) -> None:
    """Print the dashboard's URL and open it in a browser."""
    from knserve.knative.apiserver.client import default_api_url

    base = (api or default_api_url()).rstrip("/")
    url = f"{base}/dashboard"
    try:
        response = httpx.get(url, timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"no plane answers at {base} ({exc}); start one with `knserve up` or pass --api"
        ) from None
    if response.status_code != 200:
        raise click.ClickException(
            f"{url} answered {response.status_code}: is {base} a knserve control API "
            "(one that needs a token serves the dashboard only with it)?"
        )
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
