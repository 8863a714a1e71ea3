"""A warm template process that forks replicas, so scale-from-zero skips Python's imports.

Starting a model server is mostly imports: `knserve.runtime` with scikit-learn spends over a
second on them before it reads a model. The zygote does those imports once, then waits on a Unix
socket; each replica the supervisor asks for is a `fork()` of it (copy-on-write: the imported
modules' pages are shared until written), which sets the replica's environment, working folder and
log, and runs the module (`python -m knserve.runtime …`) as `__main__` in the already-warm
interpreter.

Only `python -m MODULE` commands of this interpreter, for modules under `knserve.` are forked;
anything else is started the ordinary way by the supervisor.

A forked replica gets what its environment would have given an exec'd one at interpreter start,
or is not forked. `PYTHONPATH` is applied to `sys.path` as the interpreter applies it (the working
folder first, then its entries made absolute, then the interpreter's own), unless one of its
folders holds a module the zygote has already imported: that module would shadow the zygote's
copy in an exec'd process, and a fork cannot unimport it. Every other variable that is read only
when the interpreter or a preloaded library starts (`PYTHONHASHSEED`, `PYTHONOPTIMIZE`, …, the
BLAS and OpenMP thread counts such as `OMP_NUM_THREADS`, which OpenBLAS reads once, when NumPy
loads it; glibc's `LD_*` and `MALLOC_*`) cannot be changed in a running process, so a replica
whose value differs from the zygote's is declined and the supervisor execs it instead: a second
slower to start, exactly as configured.

The protocol is one JSON object per line. The supervisor sends
`{"argv": [...], "env": {...}, "cwd": str|null, "log": path}` and receives `{"pid": N}`,
`{"declined": "why"}` (exec it instead) or `{"error": "..."}`; when a replica exits the zygote,
its parent, reaps it and sends `{"exited": N, "code": C}`. The zygote stays single-threaded, so
forking it is safe. It dies with the plane and each replica with it (the parent-death signal,
knserve.functions.parent_death), so a plane that crashes leaves neither behind.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.machinery
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path

from knserve.functions.parent_death import dying_with_parent

# What a model server replica imports; more is cheap (shared pages), less is a slower replica.
DEFAULT_PRELOAD = (
    "knserve.runtime.server",
    "knserve.runtime.app",
    "knserve.runtime.formats.sklearn",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.pipeline",
    "joblib",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "encodings.idna",
    "knserve.functions.host",
)

# A template's hook per module: called with the replica's arguments, it loads what the module
# starts with (a model server its model) and returns what runs it in each replica, or None.
# What it returns may also have `ahead(become)`: the spare replica then starts with that, which
# does what it can before the replica is asked for and calls `become()` (blocking until then).
TEMPLATE_HOOKS = {
    "knserve.runtime": "knserve.runtime.warm:preload",
    "knserve.functions.host": "knserve.functions.host:preload",
}
TEMPLATE_REFUSED = 3  # a template's exit status when its command cannot be made one
# Seconds a template waits after forking a replica before it forks the next one ahead: not while
# the one it just started competes for the CPU.
SPARE_AFTER_IDLE = 0.5


# Variables read once, when the interpreter or a library the zygote preloads starts. PYTHONPATH is
# applied by the fork itself; PYTHONDONTWRITEBYTECODE and PYTHONBREAKPOINT are read again later.
START_ENV_PREFIXES = (
    "PYTHON",
    "OMP_",
    "KMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO_",
    "BLIS_",
    "VECLIB_",
    "NUMEXPR_",
    "NPY_",
    "SKLEARN_",
    "JOBLIB_",
    "LD_",
    "MALLOC_",
)
START_ENV_NAMES = frozenset({"GLIBC_TUNABLES", "LANG", "LC_ALL", "LC_CTYPE", "TZ"})
APPLIED_IN_FORK = frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONBREAKPOINT"})


def forkable(argv: Sequence[str]) -> str | None:
    """The module a zygote can run for `argv` (`<this python> -m knserve.…`), else None."""
    # The same interpreter *and* environment: a function's venv python resolves to the same
    # binary, but its own packages are not on this process's path, so it is exec'd instead.
    ours = len(argv) >= 3 and os.path.abspath(argv[0]) == os.path.abspath(sys.executable)
    return argv[2] if ours and argv[1] == "-m" and argv[2].startswith("knserve.") else None


def python_path(cwd: str, pythonpath: str | None, interpreter: Sequence[str]) -> list[str]:
    """`sys.path` as `python -m` started in `cwd` with `pythonpath` has it: the working folder,
    the entries of `pythonpath` made absolute (an empty one is the working folder), then the
    interpreter's own folders (`interpreter`), each once."""
    entries = [cwd]
    if pythonpath:
        entries += [os.path.normpath(os.path.join(cwd, p)) for p in pythonpath.split(os.pathsep)]
    return list(dict.fromkeys([*entries, *interpreter]))


def exec_reason(
    env: Mapping[str, str],
    own: Mapping[str, str],
    new_folders: Sequence[str],
    imported: Container[str],
    preloaded: Mapping[str, str] | None = None,
) -> str | None:
    """Why a replica with `env` must be exec'd rather than forked from a zygote that started with
    `own` and has `imported` these top-level modules; None when a fork gives it the same start.
    `new_folders` are the folders its `sys.path` has and the zygote's has not. `preloaded` is the
    zygote's environment after its imports: a value an import set itself (scikit-learn sets
    KMP_DUPLICATE_LIB_OK before OpenMP loads) is in effect in the zygote, so a replica asking for
    that same value starts as it would exec'd — the plane passes it on once it imported the same."""
    after = own if preloaded is None else preloaded
    for name in sorted(set(env) | set(own) | set(after)):
        read_at_start = name.startswith(START_ENV_PREFIXES) or name in START_ENV_NAMES
        if not read_at_start or name in APPLIED_IN_FORK:
            continue
        wanted = env.get(name)
        set_by_imports = after.get(name) != own.get(name)
        if wanted != own.get(name) and not (set_by_imports and wanted == after.get(name)):
            return f"{name} is read when the interpreter starts"
    suffixes = tuple(importlib.machinery.all_suffixes())
    for folder in new_folders:
        if not os.path.isdir(folder):
            if os.path.exists(folder):  # a zip: its modules are not listed cheaply
                return f"{folder} on its path is not a folder"
            continue
        for entry in os.listdir(folder):
            top = entry.split(".", 1)[0]
            module = entry.endswith(suffixes) or os.path.isdir(os.path.join(folder, entry))
            if module and top in imported:
                return f"{os.path.join(folder, entry)} would shadow the {top} the zygote imported"
    return None


def _child(
    closing: Sequence[socket.socket],
    die_with_zygote: Callable[[], None] | None,
    runner: Callable[[], None] | None,
    started: int | None,
    request: dict | None = None,
    path: list[str] | None = None,
) -> None:
    """In the forked replica: become the process the request describes, then run its module
    (`runner`, a template's, when given). Forked on request, it tells the zygote on `started`
    once it leads its own group; a spare (no `request`) waits for its request and path on
    `started`, which is then the pipe they come on (see _Server._spare), after running its
    runner's `ahead` part when it has one (the runner then calls `become` when it is ready)."""
    try:
        if die_with_zygote is not None:
            die_with_zygote()  # and the zygote dies with the plane: nothing outlives a crash
        # The default dispositions before the zygote reports the replica started: a SIGTERM sent
        # to it as soon as it is known must stop it, not run the zygote's handler in this copy.
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for sock in closing:
            sock.close()
        os.setsid()  # its own process group: the supervisor stops it (and its children) by group
        if request is None:
            assert started is not None
            inbox = started

            def become() -> None:
                message = b""
                while chunk := os.read(inbox, 65536):
                    message += chunk
                if not message:  # the template is gone or ends its spare
                    os._exit(0)
                os.close(inbox)
                _become(*json.loads(message))

            ahead = getattr(runner, "ahead", None)
            if ahead is not None:
                ahead(become)  # it calls become() once it has done all it can ahead
            else:
                become()
                _run(runner)
        else:
            assert path is not None
            if started is not None:
                os.write(started, b".")
                os.close(started)
            _become(request, path)
            _run(runner)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _become(request: dict, path: list[str]) -> None:
    """Make this forked process the one `request` asks for: its log, folder, environment, path
    and arguments."""
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    if request.get("cwd"):
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = path
    importlib.invalidate_caches()
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    argv = request["argv"]
    sys.argv = [argv[2], *argv[3:]]


def _run(runner: Callable[[], None] | None) -> None:
    if runner is not None:  # a template's replica: its module's state is loaded already
        runner()
    else:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


class _Server:
    def __init__(
        self,
        path: Path,
        started_env: dict[str, str],
        interpreter_path: list[str],
        template: tuple[list[str], Callable[[], None] | None] | None = None,
    ) -> None:
        self.path = path
        # a template forks only its own command, running `runner` (or the module) in each replica
        self.template = template
        # the environment it started with: preloads may add to os.environ (KMP_DUPLICATE_LIB_OK…),
        # as they would in an exec'd replica
        self.started_env = started_env
        self.interpreter_path = interpreter_path  # sys.path without the working folder, PYTHONPATH
        # Its top-level modules, once: walking sys.modules per request writes the refcounts of
        # thousands of objects, and so copies the pages a spare shares (milliseconds per fork).
        self.imported = frozenset(name.partition(".")[0] for name in sys.modules)
        self.die_with_zygote = dying_with_parent()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.listener.bind(str(path))
        self.listener.listen()
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.buffers: dict[socket.socket, bytes] = {}
        self.owner: dict[int, socket.socket] = {}  # replica pid -> the connection that asked
        # A template keeps one replica forked ahead, waiting for its request (_spare): the next
        # scale from zero does not wait for a fork. Made again once the template is idle.
        self.spare: tuple[int, int] | None = None  # (pid, the pipe its request goes down)
        # The first one not at once: the launcher measures the template's own memory (USS) as
        # soon as it connects, before a spare shares (and so hides) its pages.
        self.spare_due = time.monotonic() + SPARE_AFTER_IDLE if template is not None else None
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: object) -> None:
        self.running = False

    def serve(self) -> None:
        while self.running:
            timeout = 1.0
            if self.spare_due is not None:
                timeout = min(timeout, max(0.0, self.spare_due - time.monotonic()))
            for key, _ in self.selector.select(timeout=timeout):
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    conn.setblocking(True)
                    self.buffers[conn] = b""
                    self.selector.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self._reap()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            if self.spare_due is not None and time.monotonic() >= self.spare_due:
                self._spare()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _read(self, conn: socket.socket) -> None:
        data = conn.recv(65536)
        if not data:
            self.selector.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buffer = self.buffers[conn] + data
        *lines, self.buffers[conn] = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._spawn(conn, json.loads(line))

    def _spawn(self, conn: socket.socket, request: dict) -> None:
        if forkable(request.get("argv") or []) is None:
            self._send(conn, {"error": f"cannot fork {request.get('argv')!r}"})
            return
        runner = None
        if self.template is not None:
            own, runner = self.template
            if request["argv"] != own:
                self._send(conn, {"declined": "the template was made for another command"})
                return
        env = request["env"]
        cwd = os.path.abspath(request.get("cwd") or os.getcwd())
        path = python_path(cwd, env.get("PYTHONPATH"), self.interpreter_path)
        new_folders = [p for p in path if p not in sys.path]
        reason = exec_reason(env, self.started_env, new_folders, self.imported, os.environ)
        if reason is not None:
            self._send(conn, {"declined": reason})
            return
        if self.spare is not None:  # forked ahead, leading its group already: it goes at once
            pid, inbox = self.spare
            self.spare, self.spare_due = None, time.monotonic() + SPARE_AFTER_IDLE
            self.owner[pid] = conn
            # the answer first: the spare, woken by its request, may take this CPU at once
            self._send(conn, {"pid": pid})
            with contextlib.suppress(OSError):
                os.write(inbox, json.dumps([request, path]).encode())
            os.close(inbox)
            return
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(started_r)
            closing = [self.listener, *self.buffers]
            _child(closing, self.die_with_zygote, runner, started_w, request, path)
        os.close(started_w)
        # answer only once the child leads its own group, so stopping it by group never misses
        os.read(started_r, 1)
        os.close(started_r)
        self.owner[pid] = conn
        self._send(conn, {"pid": pid})

    def _spare(self) -> None:
        """Fork the template's next replica ahead: it leads its own group and waits for its
        request on a pipe."""
        self.spare_due = None
        if self.template is None or self.spare is not None:
            return
        inbox_r, inbox_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(inbox_w)
            _child([self.listener, *self.buffers], self.die_with_zygote, self.template[1], inbox_r)
        os.close(inbox_r)
        self.spare = (pid, inbox_w)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:  # it died waiting: make another
                os.close(self.spare[1])
                self.spare, self.spare_due = None, time.monotonic() + SPARE_AFTER_IDLE
            conn = self.owner.pop(pid, None)
            if conn is not None:
                self._send(conn, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _send(self, conn: socket.socket, message: dict) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(message).encode() + b"\n")


def _warm_up() -> None:
    """Pay first-call costs once, here, instead of in every replica's first request: scikit-learn's
    first predict scans every installed package's entry points (10-20 ms) and caches the result."""
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [0.9, 0.1]])
        model = LogisticRegression().fit(x, [0, 1, 0, 1])
        model.predict(x[:1])
        model.predict_proba(x[:1])
    except Exception:
        pass  # an optional extra missing: replicas pay the cost themselves


def _prepared(command: list[str]) -> Callable[[], None] | None:
    """Load what `command`'s module starts with, through its hook (TEMPLATE_HOOKS); None when
    it has none: replicas then run the module, as the zygote's do. Exits with status 3 (the
    launcher then makes no template) when the hook cannot, or leaves threads running: a fork
    has only the thread that forks."""
    hook = TEMPLATE_HOOKS.get(command[2])
    if hook is None:
        return None
    module, _, name = hook.partition(":")
    runner = getattr(importlib.import_module(module), name)(command[3:])
    if runner is None:
        print(f"{command[2]} started so cannot be a template", flush=True)
        sys.exit(TEMPLATE_REFUSED)
    if threading.active_count() > 1:
        print(f"loading left {threading.active_count() - 1} threads running", flush=True)
        sys.exit(TEMPLATE_REFUSED)
    return runner


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m knserve.knative.supervisor.zygote")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--preload", default=",".join(DEFAULT_PRELOAD))
    parser.add_argument(
        "--template",
        nargs=argparse.REMAINDER,
        help="the replica command (`python -m knserve.…`) this template forks, loaded first",
    )
    args = parser.parse_args(argv)
    # What the interpreter started with, before the preloads add to it.
    started_env = dict(os.environ)
    started_with = python_path(os.getcwd(), os.environ.get("PYTHONPATH"), ())
    interpreter_path = [p for p in sys.path if p not in started_with]
    for module in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # an extra that is not installed: replicas that need it import it themselves
    if not args.template and "sklearn" in sys.modules:
        _warm_up()
    template = None
    if args.template:
        if forkable(args.template) is None:
            parser.error(f"--template: {args.template!r} is not `{sys.executable} -m knserve.…`")
        template = (args.template, _prepared(args.template))
    # Objects that exist now are never collected: the collector then never writes to (and so
    # never copies) the pages replicas share with the zygote.
    gc.collect()
    gc.freeze()
    server = _Server(args.socket, started_env, interpreter_path, template)
    print(f"{'template' if template else 'zygote'} ready on {args.socket}", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
