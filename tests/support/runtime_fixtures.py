"""An in-process model server for tests: the real ASGI app through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.runtime.app import InferenceApp, create_app
from knserve.runtime.model import Model
from knserve.runtime.settings import ModelSpec, RuntimeSettings


@asynccontextmanager
async def serving(
    settings: RuntimeSettings | None = None, models: list[Model] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, InferenceApp]]:
    """Start the app's lifespan, wait for every model to load, and give a client bound to it."""
    app = create_app(settings, models)
    await app.startup(wait=True)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            yield client, app
    finally:
        await app.shutdown()


def model_settings(
    name: str, folder: Path, fmt: str | None = None, **kwargs: Any
) -> RuntimeSettings:
    return RuntimeSettings(models=(ModelSpec(name, str(folder), fmt),), **kwargs)


@pytest.fixture
def serve_app() -> Callable[..., Any]:
    return serving
