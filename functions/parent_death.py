"""Child processes that die with the process that started them: Linux's parent-death signal.

What `knserve up` and `knserve func run` start (the warm zygote, model servers, a container's
command, a function's host) must not outlive them: a crash or a `kill -9` would otherwise leave
them running under pid 1, holding memory and ports. `prctl(PR_SET_PDEATHSIG)` has the kernel send
the child a signal when its parent dies, whatever kills the parent and whatever the child runs; a
lifeline pipe would need every child to watch it, which a container's own command does not.

Two caveats shape its use. The signal follows the *thread* that forked the child, not the
process, so children are started only from a thread that lives as long as the process (the
event loop's, which is the main one). And the parent may die between the fork and the `prctl`;
the child then sees that its parent is no longer the one that forked it and stops itself.
Off Linux there is no such signal and `dying_with_parent` returns None.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def dying_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A function for a child just forked from this process to call (a subprocess `preexec_fn`):
    from then on the child is sent `sig` when this process dies. None off Linux.

    `prctl` is resolved here, in the parent: the forked child only calls it (loading a library
    after a fork of a threaded process can deadlock on a lock another thread held)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc().prctl
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # it died before the prctl took effect
            os.kill(os.getpid(), sig)

    return die_with_parent
