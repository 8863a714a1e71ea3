"""The functions package's one error: `FunctionError`, whose message says what to fix.

The CLI catches it and prints `Error: <message>` with exit code 1; nothing else in the package
prints or exits.
"""

from __future__ import annotations


class FunctionError(Exception):
    """A function cannot be created, validated, built, run or invoked; the message says why."""
