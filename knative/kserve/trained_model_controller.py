"""The TrainedModel controller of the local plane: TrainedModels loaded into their server.

KServe splits this between its controller, which keeps the ConfigMap `modelconfig-{isvc}-0`
(`models.json`, the TrainedModels an InferenceService holds), and the model agent injected
beside a multi-model server, which downloads each listed model and loads or unloads it through
the server's repository extension (`POST /v2/repository/models/{name}/load|unload`). Here:

- the ConfigMap is a file, `{config_dir}/{namespace}/modelconfig-{isvc}-0/models.json`, as a
  mounted ConfigMap is one; `replica_spec` (the plane's counterpart of KServe's agent injector,
  run for every revision the serving controller starts) hands its path to the replicas of a
  revision carrying KServe's agent annotations (`$KNSERVE_MODEL_CONFIG`). A replica, new from a
  scale-out or from zero, reads it when it starts and loads every model it lists before its
  readiness probe passes, as KServe's agent loads the ConfigMap's models at start before it
  watches for changes; so no request reaches a replica that lacks one of them, and no request
  waits on the plane's controller to have noticed the replica;
- reconciling an InferenceService's TrainedModels (level-based, on any event of a TrainedModel,
  of the InferenceService, of its runtimes, or of a replica of its predictor) writes the file,
  then brings every ready replica to it through the repository extension: it reads the
  replica's index, loads what is listed and missing (or changed), and unloads what was
  listed and is no more. A replica that answers a load with a failure (a bad storageUri, a
  file the framework cannot read) keeps the others serving; its reason becomes the
  TrainedModel's `Ready=False, ModelLoadFailed`;
- a TrainedModel enters the file once its InferenceService is ready, its framework supported,
  its predictor a multi-model one and its memory within the predictor's limit (KServe's
  controller returns before its modelconfig reconciler otherwise), and stays until deleted;
- deleting the InferenceService deletes its TrainedModels, as KServe's controller deletes a
  TrainedModel whose InferenceService is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.reconciler import WorkQueue, watching
from knserve.knative.apiserver.store import Event, Store, now
from knserve.knative.kserve.inferenceservice import COMPONENT_LABEL, ISVC_LABEL, predictor_model
from knserve.knative.kserve.runtimes import RuntimeNotFound, merge_runtimes, select_runtime
from knserve.knative.kserve.trained_model import (
    AGENT_ANNOTATION,
    ALLOCATED_LABEL,
    CONFIG_VOLUME_ANNOTATION,
    MODEL_CONFIG_FILE,
    PARENT_LABEL,
    allocate,
    is_mms_predictor,
    model_config_name,
    predictor_memory_limit,
    trained_model_status,
)
from knserve.knative.supervisor.replicas import RevisionProcessSpec, Supervisor
from knserve.runtime.model_config import model_config_entry

__all__ = ["MODEL_CONFIG_ENV", "TrainedModelController"]

log = logging.getLogger(__name__)

TRAINED_MODEL, ISVC, REVISION, SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME = (
    named(k)
    for k in (
        "trainedmodels",
        "inferenceservices",
        "revisions",
        "servingruntimes",
        "clusterservingruntimes",
    )
)
MODEL_CONFIG_ENV = "KNSERVE_MODEL_CONFIG"
LOAD_TIMEOUT = 300.0  # a load downloads the model first


def _parent(tm: Mapping[str, Any]) -> str:
    return str((tm.get("spec") or {}).get("inferenceService") or "")


def _is_ready(obj: Mapping[str, Any] | None) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def runtime_formats(
    isvc: Mapping[str, Any], runtimes: Sequence[Mapping[str, Any]]
) -> list[str] | None:
    """The model formats the predictor's runtime supports; None for custom containers."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    try:
        model = predictor_model(predictor)
    except ValueError:
        return []
    if model is None:
        return None
    try:
        runtime = select_runtime(model, runtimes)
    except RuntimeNotFound:
        return []
    return [e["name"] for e in runtime.spec.get("supportedModelFormats", [])]


class TrainedModelController:
    """Keeps each multi-model InferenceService's replicas holding its TrainedModels (module
    docstring); `config_dir` holds the model config files."""

    def __init__(self, store: Store, supervisor: Supervisor, config_dir: Path) -> None:
        self.store = store
        self.supervisor = supervisor
        self.config_dir = Path(config_dir)
        self._queue: WorkQueue[tuple[str, str]] = WorkQueue()
        # per InferenceService: every model name its config listed (what a replica may hold)
        self._known: dict[tuple[str, str], set[str]] = {}
        # per InferenceService: the reason a replica gave for not loading a TrainedModel
        self._failures: dict[tuple[str, str], dict[str, str]] = {}
        supervisor.subscribe(self._replica_changed)

    # ---- the agent injector ------------------------------------------------------------------

    def config_path(self, namespace: str, config_name: str) -> Path:
        return self.config_dir / namespace / config_name / MODEL_CONFIG_FILE

    def replica_spec(self, spec: RevisionProcessSpec) -> RevisionProcessSpec:
        """A multi-model revision's replicas get the path of its model config (module docstring)."""
        config_name = spec.annotations.get(CONFIG_VOLUME_ANNOTATION)
        if spec.annotations.get(AGENT_ANNOTATION) != "true" or not config_name:
            return spec
        path = self.config_path(spec.namespace, config_name)
        env = [e for e in spec.container.get("env") or [] if e.get("name") != MODEL_CONFIG_ENV]
        env.append({"name": MODEL_CONFIG_ENV, "value": str(path)})
        return dataclasses.replace(spec, container={**spec.container, "env": env})

    # ---- the loop ----------------------------------------------------------------------------

    def mark(self, namespace: str, isvc: str) -> None:
        if isvc:
            self._queue.mark((namespace, isvc))

    async def run(self) -> None:
        async with watching(self.store, self._handle, "trainedmodel-controller-watch"):
            for tm in self.store.list(TRAINED_MODEL):
                self.mark(tm["metadata"]["namespace"], _parent(tm))
            await self._queue.run(lambda key: self.reconcile(*key), "trainedmodel")

    async def _handle(self, event: Event) -> None:
        meta = event.object["metadata"]
        namespace = meta.get("namespace", "")
        if event.kind is TRAINED_MODEL:
            self.mark(namespace, _parent(event.object))
        elif event.kind is ISVC:
            if event.type == "DELETED":
                self._isvc_deleted(namespace, meta["name"])
            else:
                self.mark(namespace, meta["name"])
        elif event.kind is SERVING_RUNTIME or event.kind is CLUSTER_SERVING_RUNTIME:
            cluster = event.kind is CLUSTER_SERVING_RUNTIME
            for tm in self.store.list(TRAINED_MODEL, None if cluster else namespace):
                self.mark(tm["metadata"]["namespace"], _parent(tm))

    def _replica_changed(self, namespace: str, revision: str) -> None:
        rev = self.store.find(REVISION, namespace, revision)
        if rev is not None and (rev["metadata"].get("annotations") or {}).get(AGENT_ANNOTATION):
            self.mark(namespace, (rev["metadata"].get("labels") or {}).get(ISVC_LABEL, ""))

    def _isvc_deleted(self, namespace: str, name: str) -> None:
        for tm in self.store.list(TRAINED_MODEL, namespace):
            if _parent(tm) == name:
                self.store.delete(TRAINED_MODEL, namespace, tm["metadata"]["name"])
        shutil.rmtree(self.config_path(namespace, model_config_name(name)).parent, True)
        self._known.pop((namespace, name), None)
        self._failures.pop((namespace, name), None)

    # ---- one InferenceService ----------------------------------------------------------------

    async def reconcile(self, namespace: str, isvc_name: str) -> None:
        key = (namespace, isvc_name)
        tms = [tm for tm in self.store.list(TRAINED_MODEL, namespace) if _parent(tm) == isvc_name]
        isvc = self.store.find(ISVC, namespace, isvc_name)
        if isvc is None:
            for tm in tms:
                status = trained_model_status(
                    tm, None, fits=False, formats=(), load_failure=None,
                    previous=tm.get("status"), now=now(),
                )  # fmt: skip
                self.store.write_status(TRAINED_MODEL, tm, status)
            return
        fits = allocate(tms, predictor_memory_limit(isvc))
        tms = [self._label(tm, isvc_name, fits[tm["metadata"]["name"]]) for tm in tms]
        runtimes = merge_runtimes(
            [
                *self.store.list(SERVING_RUNTIME, namespace),
                *self.store.list(CLUSTER_SERVING_RUNTIME),
            ]
        )
        formats = runtime_formats(isvc, runtimes)
        mms = is_mms_predictor((isvc.get("spec") or {}).get("predictor") or {})
        path = self.config_path(namespace, model_config_name(isvc_name))
        before = _read_entries(path)
        wanted: dict[str, dict[str, Any]] = {}
        for tm in tms:
            name, model = tm["metadata"]["name"], tm["spec"]["model"]
            supported = formats is None or model.get("framework") in formats
            if mms and supported and fits[name] and (_is_ready(isvc) or name in before):
                wanted[name] = model_config_entry(
                    name, model["storageUri"], model["framework"], str(model["memory"])
                )
        if wanted != before or not path.exists():
            _write_entries(path, wanted)
        known = self._known.setdefault(key, set())
        known.update(before, wanted)
        changed = {n for n, e in wanted.items() if before.get(n) not in (None, e)}
        failures = self._failures.setdefault(key, {})
        for name in changed:
            failures.pop(name, None)
        for name in list(failures):
            if name not in wanted:
                del failures[name]
        await self._sync_replicas(namespace, isvc_name, wanted, changed, known, failures)
        for tm in tms:
            name = tm["metadata"]["name"]
            status = trained_model_status(
                tm,
                isvc,
                fits=fits[name],
                formats=formats,
                load_failure=failures.get(name),
                previous=tm.get("status"),
                now=now(),
            )
            self.store.write_status(TRAINED_MODEL, tm, status)

    def _label(self, tm: dict[str, Any], isvc_name: str, fits: bool) -> dict[str, Any]:
        """KServe's labels: the parent InferenceService, and `trainedmodel-allocated` once the
        model's memory is counted against the server's."""
        labels = dict(tm["metadata"].get("labels") or {})
        wanted = {**labels, PARENT_LABEL: isvc_name}
        if fits:
            wanted[ALLOCATED_LABEL] = isvc_name
        if wanted == labels:
            return tm
        tm["metadata"]["labels"] = wanted
        return self.store.replace(TRAINED_MODEL, tm, validate=False)

    # ---- the replicas ------------------------------------------------------------------------

    def _endpoints(self, namespace: str, isvc_name: str) -> list[str]:
        """The ready replicas of the InferenceService's multi-model predictor revisions."""
        selector = f"{ISVC_LABEL}={isvc_name},{COMPONENT_LABEL}=predictor"
        endpoints: list[str] = []
        for rev in self.store.list(REVISION, namespace, selector):
            if (rev["metadata"].get("annotations") or {}).get(AGENT_ANNOTATION):
                status = self.supervisor.status(namespace, rev["metadata"]["name"])
                endpoints += status.endpoints
        return endpoints

    async def _sync_replicas(
        self,
        namespace: str,
        isvc_name: str,
        wanted: Mapping[str, Any],
        changed: set[str],
        known: set[str],
        failures: dict[str, str],
    ) -> None:
        endpoints = self._endpoints(namespace, isvc_name)
        if not endpoints:
            return
        async with httpx.AsyncClient(timeout=LOAD_TIMEOUT, trust_env=False) as client:
            await asyncio.gather(
                *(self._sync(client, ep, wanted, changed, known, failures) for ep in endpoints)
            )

    async def _sync(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        wanted: Mapping[str, Any],
        changed: set[str],
        known: set[str],
        failures: dict[str, str],
    ) -> None:
        """Bring one replica to the model config through its repository extension."""
        base = f"http://{endpoint}/v2/repository"
        try:
            response = await client.post(f"{base}/index", json={})
            index = {m["name"]: m for m in response.json()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.info("replica %s has no repository index (%s); not syncing it", endpoint, exc)
            return
        loads = [
            name
            for name in wanted
            if name in changed
            or name not in index
            or (index[name].get("state") == "UNAVAILABLE" and name not in failures)
        ]
        unloads = [n for n in index if n in known and n not in wanted]
        results = await asyncio.gather(
            *(_call(client, f"{base}/models/{n}/load") for n in loads),
            *(_call(client, f"{base}/models/{n}/unload") for n in unloads),
        )
        for name, error in zip(loads, results, strict=False):
            if error:
                failures[name] = error
            else:
                failures.pop(name, None)
        for name, entry in index.items():
            if name in wanted and name not in loads:
                if entry.get("state") == "FAILED":
                    failures[name] = f"model {name} failed to load: {entry.get('reason', '')}"
                elif entry.get("state") == "READY":
                    failures.pop(name, None)


async def _call(client: httpx.AsyncClient, url: str) -> str | None:
    """POST a repository verb; None on success, else the server's error."""
    try:
        response = await client.post(url, json={})
    except httpx.HTTPError as exc:
        return f"the model server did not answer {url}: {exc}"
    if response.status_code == 200:
        return None
    try:
        return str(response.json().get("error") or response.text)
    except ValueError:
        return response.text or f"HTTP {response.status_code}"


def _read_entries(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return {e["modelName"]: e for e in data if isinstance(e, dict) and "modelName" in e}


def _write_entries(path: Path, entries: Mapping[str, dict[str, Any]]) -> None:
    """Write `models.json` whole (a reader never sees half a file: rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(list(entries.values()), option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
