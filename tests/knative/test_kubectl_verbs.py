"""kubectl's everyday verbs against the control API: apply, patch, diff, delete, watch, selectors,
pagination."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from kubectl_fixtures import Kubectl, table_rows

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Store

KSVC = named("ksvc")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def service(name: str = "hello", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"spec": {"containers": [{"image": "python", "args": ["v1"]}]}}},
    }


def test_apply_creates_then_merge_patches_and_removes_what_the_file_dropped(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    first = service(team="ml", tier="gold")
    assert "service.serving.knative.dev/hello created" in kubectl.apply(first)
    stored = store.get(KSVC, "default", "hello")
    assert json.loads(stored["metadata"]["annotations"][LAST_APPLIED])["metadata"]["labels"] == {
        "team": "ml",
        "tier": "gold",
    }
    second = copy.deepcopy(first)
    del second["metadata"]["labels"]["tier"]
    second["spec"]["template"]["spec"]["containers"][0]["args"] = ["v2"]
    assert "service.serving.knative.dev/hello configured" in kubectl.apply(second)
    stored = store.get(KSVC, "default", "hello")
    assert stored["metadata"]["labels"] == {"team": "ml"}  # the three-way merge removed it
    assert stored["spec"]["template"]["spec"]["containers"][0]["args"] == ["v2"]
    assert stored["metadata"]["generation"] == 2
    assert "service.serving.knative.dev/hello unchanged" in kubectl.apply(second)


def test_patch_merge_and_json_and_strategic_refused(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, store = kubectl_api
    kubectl.apply(service())
    kubectl.run("patch", "ksvc", "hello", "--type=merge", "-p", '{"metadata":{"labels":{"a":"1"}}}')
    ops = '[{"op":"replace","path":"/spec/template/spec/containers/0/args","value":["v9"]}]'
    kubectl.run("patch", "ksvc", "hello", "--type=json", "-p", ops)
    stored = store.get(KSVC, "default", "hello")
    assert stored["metadata"]["labels"] == {"a": "1"}
    assert stored["spec"]["template"]["spec"]["containers"][0]["args"] == ["v9"]
    failing = '[{"op":"test","path":"/metadata/name","value":"other"}]'
    tested = kubectl.run("patch", "ksvc", "hello", "--type=json", "-p", failing, check=False)
    assert tested.returncode != 0 and "test failed" in tested.stderr
    strategic = kubectl.run("patch", "ksvc", "hello", "-p", '{"spec":{}}', check=False)
    assert strategic.returncode != 0 and "--type=merge" in strategic.stderr


def test_diff_shows_the_change_and_stores_nothing(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, store = kubectl_api
    kubectl.apply(service(team="ml"))
    before = store.get(KSVC, "default", "hello")
    changed = service(team="search")
    diff = kubectl.run("diff", "-f", "-", stdin=yaml.safe_dump(changed), check=False)
    assert diff.returncode == 1, diff.stderr  # 1: differences found
    assert "-    team: ml\n" in diff.stdout and "+    team: search\n" in diff.stdout
    assert store.get(KSVC, "default", "hello") == before  # dryRun=All wrote nothing
    same = kubectl.run("diff", "-f", "-", stdin=yaml.safe_dump(service(team="ml")), check=False)
    assert same.returncode == 0 and same.stdout == ""
    dry = kubectl.run("delete", "ksvc", "hello", "--dry-run=server")
    assert "deleted (server dry run)" in dry.stdout
    assert store.find(KSVC, "default", "hello") is not None


def test_delete_from_the_applied_file(kubectl_api: tuple[Kubectl, Store], tmp_path: Path) -> None:
    kubectl, store = kubectl_api
    manifest = tmp_path / "services.yaml"
    manifest.write_text(yaml.safe_dump_all([service("one"), service("two")]))
    kubectl.run("apply", "-f", str(manifest))
    assert [o["metadata"]["name"] for o in store.list(KSVC)] == ["one", "two"]
    deleted = kubectl.run("delete", "-f", str(manifest)).stdout
    assert 'service.serving.knative.dev "one" deleted' in deleted
    assert store.list(KSVC) == []
    again = kubectl.run("delete", "-f", str(manifest), check=False)
    assert again.returncode != 0 and 'services.serving.knative.dev "one" not found' in again.stderr


def test_selectors_and_pages(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, _ = kubectl_api
    kubectl.apply(
        service("a", team="ml"), service("b", team="web"), service("c"), service("d", team="ml")
    )

    def names(*args: str) -> list[str]:
        return kubectl.run("get", "ksvc", "-o", "name", *args).stdout.split()

    prefix = "service.serving.knative.dev/"
    assert names("-l", "team=ml") == [prefix + "a", prefix + "d"]
    assert names("-l", "team in (ml,web)") == [prefix + n for n in "abd"]
    assert names("-l", "team notin (ml)") == [prefix + n for n in "bc"]
    assert names("-l", "!team") == [prefix + "c"]
    assert names("--field-selector", "metadata.name!=a", "-l", "team") == [prefix + n for n in "bd"]
    # a chunk of one object per request, followed by continue tokens to the end
    paged = kubectl.run("get", "ksvc", "--chunk-size=1", "-v=6")
    assert paged.stderr.count("continue=") == 3
    assert [row[0] for row in table_rows(paged.stdout)] == ["NAME", "a", "b", "c", "d"]


def test_get_watch_prints_changes_as_rows(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, store = kubectl_api
    kubectl.apply(service("hello"))
    watching = kubectl.popen("get", "ksvc", "-w", "--output-watch-events")
    try:
        assert watching.stdout is not None
        header = watching.stdout.readline()
        assert header.split()[:3] == ["EVENT", "NAME", "URL"], header
        assert watching.stdout.readline().split()[:2] == ["ADDED", "hello"]
        # once the first list is printed, a status change arrives as a MODIFIED row
        obj = store.get(KSVC, "default", "hello")
        store.write_status(KSVC, obj, {"url": "http://hello.default.localhost"})
        line = watching.stdout.readline()
        assert line.split()[:3] == ["MODIFIED", "hello", "http://hello.default.localhost"], line
    finally:
        watching.kill()
        watching.communicate()


def test_server_side_apply_tracks_managers_and_conflicts(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    applied = kubectl.apply(service(team="ml", tier="gold"), extra=("--server-side",))
    assert "service.serving.knative.dev/hello serverside-applied" in applied
    entries = store.get(KSVC, "default", "hello")["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [("kubectl", "Apply")]
    assert entries[0]["fieldsV1"]["f:metadata"]["f:labels"] == {"f:team": {}, "f:tier": {}}
    # the same manager leaving a field out removes it
    kubectl.apply(service(team="ml"), extra=("--server-side",))
    assert store.get(KSVC, "default", "hello")["metadata"]["labels"] == {"team": "ml"}
    # another manager changing kubectl's field: 409 with Kubernetes' message, nothing stored
    other = ("--server-side", "--field-manager=ops")
    refused = kubectl.run(
        "apply", *other, "-f", "-", stdin=yaml.safe_dump(service(team="web")), check=False
    )
    assert refused.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl" using serving.knative.dev/v1: '
        ".metadata.labels.team" in refused.stderr
    )
    assert store.get(KSVC, "default", "hello")["metadata"]["labels"] == {"team": "ml"}
    # the same value is shared ownership, not a conflict; --force-conflicts takes the field
    kubectl.apply(service(team="ml"), extra=other)
    kubectl.apply(service(team="web"), extra=(*other, "--force-conflicts"))
    stored = store.get(KSVC, "default", "hello")
    assert stored["metadata"]["labels"] == {"team": "web"}
    owners = {e["manager"]: e["fieldsV1"] for e in stored["metadata"]["managedFields"]}
    assert "f:labels" not in owners["kubectl"].get("f:metadata", {})
    assert owners["ops"]["f:metadata"]["f:labels"] == {"f:team": {}}
    hidden = kubectl.run("get", "ksvc", "hello", "-o", "yaml").stdout
    assert "managedFields" not in hidden  # kubectl hides them unless asked


def test_updates_with_a_field_manager_own_what_they_changed(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    kubectl.apply(service(team="ml"))  # client-side: the manager kubectl-client-side-apply
    kubectl.run("label", "ksvc", "hello", "owner=me")
    stored = store.get(KSVC, "default", "hello")
    owners = {e["manager"]: e for e in stored["metadata"]["managedFields"]}
    assert owners["kubectl-label"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:owner": {}}}}
    assert owners["kubectl-client-side-apply"]["operation"] == "Update"
    # a server-side apply over the label another manager set conflicts with that manager
    ssa = service(team="ml", owner="you")
    refused = kubectl.run(
        "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(ssa), check=False
    )
    assert 'conflict with "kubectl-label"' in refused.stderr, refused.stderr


def test_server_side_apply_takes_over_from_client_side_apply(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    kubectl.apply(service(team="ml"))
    # as on a cluster: kubectl's first server-side apply takes what the last-applied
    # configuration set, without conflicts, even where it changes the value
    upgraded = kubectl.apply(service(team="web"), extra=("--server-side",))
    assert "serverside-applied" in upgraded
    stored = store.get(KSVC, "default", "hello")
    assert stored["metadata"]["labels"] == {"team": "web"}
    owners = {e["manager"]: e["fieldsV1"] for e in stored["metadata"]["managedFields"]}
    assert owners["kubectl"]["f:metadata"]["f:labels"] == {"f:team": {}}
