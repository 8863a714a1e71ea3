"""`knserve up` writes a kubeconfig context, and kubectl drives the running plane through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubectl_fixtures import Kubectl, table_rows
from plane_fixtures import LocalPlane, echo_service

from knserve.knative.cli.kubeconfig import write_context

OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://prod.example:6443"}}],
    "users": [{"name": "prod", "user": {"token": "secret"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
    "current-context": "prod",
}


def test_context_merges_into_an_existing_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))
    write_context("http://127.0.0.1:9", None, path)
    written = write_context("http://127.0.0.1:8081", "tok", path)  # again: replaced, not doubled
    config = yaml.safe_load(written.read_text())
    assert config["current-context"] == "prod"  # the user's cluster stays the default
    assert [c["name"] for c in config["clusters"]] == ["prod", "knserve"]
    assert config["clusters"][1]["cluster"] == {"server": "http://127.0.0.1:8081"}
    assert config["users"][0] == OTHER["users"][0] and config["users"][1]["user"] == {
        "token": "tok"
    }
    assert config["contexts"][1]["context"]["cluster"] == "knserve"
    assert path.stat().st_mode & 0o077 == 0  # a token inside: only the owner reads it
    fresh = write_context("http://127.0.0.1:8081", None, tmp_path / "new" / "config")
    assert yaml.safe_load(fresh.read_text())["current-context"] == "knserve"
    (tmp_path / "bad").write_text("- a list\n")
    with pytest.raises(ValueError, match="is not a kubeconfig"):
        write_context("http://127.0.0.1:8081", None, tmp_path / "bad")


@pytest.mark.slow
def test_kubectl_context_knserve_applies_waits_and_gets(
    plane: LocalPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the plane fixture started before this point; a second plane started here with its own
    # KUBECONFIG shows the line `knserve up` prints and the file it writes
    kubeconfig = tmp_path / "kube" / "config"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    plane.restart()
    assert f"kubectl: context knserve in {kubeconfig}" in plane.log()
    kubectl = Kubectl(tmp_path, kubeconfig=kubeconfig)
    assert kubectl.run("config", "current-context").stdout.strip() == "knserve"
    assert "No resources found" in kubectl.run("--context", "knserve", "get", "isvc").stderr
    kubectl.apply(echo_service("echo"), extra=("--context", "knserve"))
    waited = kubectl.run(
        "--context",
        "knserve",
        "wait",
        "--for=condition=Ready",
        "ksvc/echo",
        "--timeout=120s",
        timeout=150,
    )
    assert "service.serving.knative.dev/echo condition met" in waited.stdout
    rows = table_rows(kubectl.run("--context", "knserve", "get", "ksvc").stdout)
    assert rows[0] == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    name, url, created, ready_rev, ready, _ = rows[1]
    assert (name, created, ready_rev, ready) == ("echo", "echo-00001", "echo-00001", "True")
    assert url.startswith("http://echo.default.")
    revisions = table_rows(kubectl.run("--context", "knserve", "get", "rev").stdout)
    assert revisions[1][:2] == ["echo-00001", "echo"]
