"""Hosting a KServe SDK model file, unedited, in knserve's runtime.

    python -m knserve.runtime --kserve-model model.py --model_name=custom-model --http_port=8080

A KServe custom model or transformer is a script: it parses KServe's flags
(`argparse.ArgumentParser(parents=[kserve.model_server.parser])`), builds its `kserve.Model`
objects and hands them to `kserve.ModelServer().start([...])`, which would serve them with
KServe's server. Here the script runs as `__main__` with the same arguments, exactly as
`python model.py …` would run it, except that `ModelServer.start` hands the models to knserve
instead of serving them; nothing after `start` runs (KServe's `start` does not return either).
The models are then served by knserve's runtime (`knserve.runtime.kserve_model`), with its
flags from the same command line (`--max-batch-size`, `--cache-entries`, `--logger-url`, …,
which the script's own parser ignores as KServe's `parse_known_args` does).

As KServe's `start` does: the models must be `kserve.Model` objects, those not `ready` are left
out, `start()` is called on each, and at least one must be ready. The predictor a transformer
forwards to is KServe's `PredictorConfig` as `ModelServer()` set it from `--predictor_host` and
`--predictor_protocol`.

Anything that stops the file from getting there (KServe not installed, the file missing or
raising, no `start`, no ready model) ends the process with status 1 and a one-line reason.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knserve.runtime.kserve_forward import PredictorClient
from knserve.runtime.kserve_model import KServeModel


class KServeFileError(Exception):
    """The KServe model file cannot be hosted; the message says why and what to do."""


class _Started(BaseException):
    """Raised where KServe's `ModelServer.start` would serve: the file's models are in hand.

    A BaseException, so a file's own `except Exception` around `start` does not swallow it.
    """

    def __init__(self, models: list[Any]) -> None:
        super().__init__()
        self.models = models


def load_kserve_models(path: Path, argv: Sequence[str]) -> list[KServeModel]:
    """Run the KServe model file with `argv` and return the models it starts, ready to serve."""
    if not path.is_file():
        raise KServeFileError(f"the KServe model file {path} does not exist")
    saved_argv = sys.argv
    # KServe's model_server parses sys.argv when it is imported, and the file parses it again.
    sys.argv = [str(path), *argv]
    try:
        try:
            from kserve import context, model_server
        except ImportError as exc:
            raise KServeFileError(
                f"{path} needs KServe's Python SDK, which cannot be imported here ({exc}); "
                "install it beside knserve: pip install kserve==0.21.0"
            ) from None
        # Imported earlier with other arguments (in a test, say): the file's arguments win.
        model_server.args, _ = model_server.parser.parse_known_args(argv)
        started = _run_until_start(path, model_server.ModelServer)
        config = context.get_predictor_config()
    finally:
        sys.argv = saved_argv
    return [_hosted(model, config) for model in _ready_models(path, started)]


def _run_until_start(path: Path, server_class: Any) -> list[Any]:
    original = server_class.start

    def start(server: Any, models: list[Any]) -> None:
        registered = list(server.registered_models.get_models().values())
        raise _Started([*registered, *(m for m in models if m not in registered)])

    server_class.start = start
    # As `python model.py` does, the file's folder comes first on sys.path (kept: its models
    # may import modules beside it when they are called).
    sys.path.insert(0, str(path.resolve().parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    except _Started as done:
        return done.models
    except Exception as exc:
        raise KServeFileError(f"running {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        server_class.start = original
    raise KServeFileError(
        f"{path} ended without calling kserve.ModelServer().start([...]); run it as its "
        "__main__ block does (the models are what it passes to start)"
    )


def _ready_models(path: Path, models: list[Any]) -> list[Any]:
    import kserve

    for model in models:
        if not isinstance(model, kserve.Model):
            raise KServeFileError(
                f"{path} starts a {type(model).__name__}, not a kserve.Model; knserve's runtime "
                "hosts kserve.Model subclasses (run other kinds with KServe's own server as the "
                "revision's command)"
            )
    ready = [m for m in models if m.ready]
    for model in models:
        model.start()  # KServe calls every model's start hook, ready or not
    if not ready:
        names = ", ".join(repr(m.name) for m in models) or "none"
        raise KServeFileError(
            f"no model of {path} is ready (models: {names}); set self.ready = True in load()"
        )
    return ready


def _hosted(model: Any, config: Any) -> KServeModel:
    forward = PredictorClient.from_config(model.name, config)
    return KServeModel(model, forward.predict if forward is not None else None)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m knserve.runtime --kserve-model FILE [the file's and the runtime's flags]`."""
    from knserve.runtime.server import parser, run, runtime_options
    from knserve.runtime.settings import settings_from_env

    argv = list(sys.argv[1:] if argv is None else argv)
    args, _ = parser().parse_known_args(argv)
    try:
        settings = settings_from_env(None, **runtime_options(args))
        models = load_kserve_models(Path(args.kserve_model), _file_argv(argv))
    except (KServeFileError, ValueError) as exc:
        print(f"knserve.runtime: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    try:
        run(settings, models)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


def _file_argv(argv: list[str]) -> list[str]:
    """`argv` without `--kserve-model FILE` (or `--kserve-model=FILE`): the file's arguments."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--kserve-model":
            skip = True
        elif not arg.startswith("--kserve-model="):
            out.append(arg)
    return out
