"""The store's labels index: a `key=value` selector is answered from it, so it must follow every
write, deletion (cascades included) and a store written before the index existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store

KSVC = by_name("ksvc")
CONFIG = by_name("configuration")


def ksvc(name: str, **labels: str) -> dict[str, Any]:
    container = {"image": "python"}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def names(store: Store, selector: str, namespace: str | None = "default") -> list[str]:
    return [o["metadata"]["name"] for o in store.list(KSVC, namespace, selector)]


def test_a_label_selector_follows_updates_patches_and_deletions(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.create(KSVC, ksvc("a", team="ml"))
    b = store.create(KSVC, ksvc("b", team="ml", tier="gpu"))
    assert names(store, "team=ml") == ["a", "b"]
    assert names(store, "team=ml", None) == ["a", "b"]  # every namespace
    assert names(store, "team=ml,tier=gpu") == ["b"]
    b["metadata"]["labels"] = {"team": "web"}
    store.replace(KSVC, b)
    assert (names(store, "team=ml"), names(store, "team=web")) == (["a"], ["b"])
    store.patch(KSVC, "default", "a", {"metadata": {"labels": {"team": None, "x": "1"}}})
    assert (names(store, "team=ml"), names(store, "x=1")) == ([], ["a"])
    store.delete(KSVC, "default", "a")
    assert names(store, "x=1") == []
    store.close()


def test_an_owned_objects_labels_go_with_a_cascading_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    owner = store.create(KSVC, ksvc("owner"))
    ref = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "owner"}
    ref["uid"] = owner["metadata"]["uid"]
    config = {
        "metadata": {"name": "owner", "namespace": "default", "labels": {"svc": "owner"}},
        "spec": {"template": {"spec": {"containers": [{"image": "python"}]}}},
    }
    config["metadata"]["ownerReferences"] = [ref]
    store.create(CONFIG, config, validate=False)
    assert len(store.list(CONFIG, "default", "svc=owner")) == 1
    store.delete(KSVC, "default", "owner")
    assert store.list(CONFIG, "default", "svc=owner") == []
    store.close()


def test_a_store_written_before_the_labels_index_gets_one_when_opened(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.create(KSVC, ksvc("old", team="ml"))
    store._db.execute("DELETE FROM labels")  # as a store written by an older knserve has it
    store.close()
    reopened = Store(tmp_path / "state.db")
    assert names(reopened, "team=ml") == ["old"]
    reopened.close()
