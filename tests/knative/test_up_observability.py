"""`knserve up`'s access log from Knative's config-observability ConfigMap, and its refusals."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from knserve.knative.cli import root
from knserve.knative.cli.up import configmap_data, request_log_enabled

# Knative serving's config-observability, as a cluster has it (the key the access log follows).
CONFIG_OBSERVABILITY = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-observability
  namespace: knative-serving
data:
  logging.enable-request-log: "{value}"
  metrics.backend-destination: prometheus
"""


def test_the_request_log_follows_knatives_key(tmp_path: Path) -> None:
    path = tmp_path / "config-observability.yaml"
    for value, expected in (("true", True), ("false", False)):
        path.write_text(CONFIG_OBSERVABILITY.format(value=value))
        assert request_log_enabled(configmap_data(path, "config-observability")) is expected
    assert request_log_enabled({}) is False  # off unless asked for


def test_a_bad_value_stops_knserve_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config-observability.yaml"
    path.write_text(CONFIG_OBSERVABILITY.format(value="yes"))
    result = CliRunner().invoke(
        root, ["up", "--data-dir", str(tmp_path / "d"), "--observability-config", str(path)]
    )
    assert result.exit_code == 2
    assert (
        "config-observability logging.enable-request-log is 'yes'; write true or false"
        in result.output
    )
    assert not (tmp_path / "d").exists()  # nothing started


def test_an_unknown_log_format_is_refused() -> None:
    result = CliRunner().invoke(root, ["up", "--log-format", "yaml"])
    assert result.exit_code == 2
    assert "'yaml' is not one of 'text', 'json'" in result.output
