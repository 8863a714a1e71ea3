"""An opt-in response cache for one model: LRU with an entry bound and a time to live.

A key is a digest of the model's name and version and the *canonical* request: the request
decoded and re-encoded with sorted keys and no whitespace, so two bodies that differ only in
formatting hit the same entry, while anything that changes the answer (inputs, parameters,
requested outputs) changes the key. The model version is part of the key and each model owns its
cache, so an entry is never served across models or after a new version is loaded.

Time comes from an injected clock (monotonic seconds), so expiry is tested exactly.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")


def cache_key(model: str, version: str | None, request: Any) -> str:
    """The digest of a model version and a canonical request (any JSON-serialisable value)."""
    canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(model.encode())
    digest.update(b"\0")
    digest.update((version or "").encode())
    digest.update(b"\0")
    digest.update(canonical)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int


class ResponseCache(Generic[V]):
    """LRU of at most `max_entries` values, each valid for `ttl` seconds (None: no expiry)."""

    def __init__(
        self,
        max_entries: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries is {max_entries}, it must be 1 or more")
        if ttl is not None and ttl <= 0:
            raise ValueError(
                f"ttl is {ttl}, it must be more than 0 seconds (or None for no expiry)"
            )
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._hits = self._misses = self._evictions = self._expirations = 0

    def get(self, key: str) -> V | None:
        """The cached value, or None on a miss (absent or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            self._expirations += 1
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return value

    def put(self, key: str, value: V) -> None:
        expires = float("inf") if self.ttl is None else self._clock() + self.ttl
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1

    def clear(self) -> None:
        """Drop every entry (a model reload calls this)."""
        self._entries.clear()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(
            self._hits, self._misses, self._evictions, self._expirations, len(self._entries)
        )
