"""A Prometheus configuration that finds the plane's targets by HTTP service discovery.

`knserve up --prometheus FILE` writes it (and `prometheus --config.file FILE` then scrapes every
ready replica and the plane's parts as they come and go): one job whose `http_sd_configs` polls
the control API's `/prometheus/targets` (`knserve.knative.monitoring.targets`). With a control API
token, both discovery and scraping send it as the bearer token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knserve.knative.monitoring.targets import TARGETS_PATH

JOB = "knserve"
SCRAPE_INTERVAL = "15s"  # Prometheus' default
# New replicas (scale from zero) should be scraped within seconds, and discovery is cheap here.
SD_REFRESH_INTERVAL = "5s"


def scrape_config(
    api_url: str, token: str | None = None, scrape_interval: str = SCRAPE_INTERVAL
) -> dict[str, Any]:
    """Prometheus' configuration (as a mapping) scraping the plane whose control API is `api_url`."""
    sd: dict[str, Any] = {"url": api_url.rstrip("/") + TARGETS_PATH}
    sd["refresh_interval"] = SD_REFRESH_INTERVAL
    job: dict[str, Any] = {"job_name": JOB, "http_sd_configs": [sd]}
    if token:
        bearer = {"type": "Bearer", "credentials": token}
        sd["authorization"] = bearer
        job["authorization"] = dict(bearer)
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [job],
    }


def write_scrape_config(path: Path, api_url: str, token: str | None = None) -> None:
    """Write `scrape_config` to `path` as YAML, with a comment that says how to use it."""
    import yaml

    text = yaml.safe_dump(scrape_config(api_url, token), sort_keys=False)
    if token:  # the file holds the control API's token: for its owner's eyes only
        path.touch(mode=0o600)
        path.chmod(0o600)
    path.write_text(
        f"# Prometheus configuration for the knserve plane at {api_url}, written by knserve up.\n"
        f"# Run: prometheus --config.file {path}\n{text}"
    )
