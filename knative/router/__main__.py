"""`python -m knserve.knative.router --graph-json JSON`: KServe's router, as a revision runs it.

The flag is the one KServe's controller passes to its `kserve/router` image (the graph's spec
as JSON, InferenceService steps already resolved to `serviceUrl`s); `PROPAGATE_HEADERS` names the
headers to pass on. It listens on `$PORT` (Knative's contract; 8080, KServe's RouterPort, when
unset) and keeps idle connections `routerTimeouts.serverIdle` seconds (180 by default).
"""

from __future__ import annotations

import json
import os
import sys

import click

from knserve.knative.router.app import RouterApp, compile_patterns

SERVER_IDLE_SECONDS = 180  # KServe's RouterTimeoutServerIdle


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--graph-json", required=True, help="the InferenceGraph's spec as JSON")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
def main(graph_json: str, host: str) -> None:
    """Serve an InferenceGraph: every request runs from its root node."""
    import uvicorn

    try:
        spec = json.loads(graph_json)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--graph-json") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), dict):
        raise click.BadParameter(
            "give the InferenceGraph's spec, an object with `nodes`", param_hint="--graph-json"
        )
    namespace, _, name = (os.environ.get("KNSERVE_GRAPH") or "default/graph").partition("/")
    app = RouterApp(
        spec,
        compile_patterns(os.environ.get("PROPAGATE_HEADERS", "")),
        sink=os.environ.get("K_SINK") or None,  # an async graph's broker (knative.router.chain)
        graph=(namespace, name),
    )
    idle = (spec.get("routerTimeouts") or {}).get("serverIdle") or SERVER_IDLE_SECONDS
    port = int(os.environ.get("PORT") or 8080)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=int(idle),
        access_log=False,
    )


if __name__ == "__main__":
    sys.exit(main())
