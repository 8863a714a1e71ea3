"""Fixtures for the knative tests: the InferenceService controller over a real SQLite store
(`store`, `controller`) and the routes it programs (`routes`). A module's own fixture of the same
name (test_kube.py's `store`) wins over these."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import (
    InferenceServiceController,
    IsvcRoute,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


@pytest.fixture
def routes() -> dict[tuple[str, str], tuple[IsvcRoute, ...]]:
    return {}


@pytest.fixture
def controller(
    store: Store, routes: dict[tuple[str, str], tuple[IsvcRoute, ...]]
) -> InferenceServiceController:
    def changed(namespace: str, name: str, new: tuple[IsvcRoute, ...]) -> None:
        routes[(namespace, name)] = new

    return InferenceServiceController(store, routes_changed=changed)
