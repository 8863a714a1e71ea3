"""The response cache: canonical keys, LRU bound, TTL, and never sharing across models or versions."""

from __future__ import annotations

import numpy as np
import pytest

from knserve.runtime.cache import ResponseCache, cache_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_key_ignores_formatting_and_key_order_but_not_content() -> None:
    a = cache_key("iris", "1", {"instances": [[1, 2]], "parameters": {"a": 1, "b": 2}})
    b = cache_key("iris", "1", {"parameters": {"b": 2, "a": 1}, "instances": [[1, 2]]})
    assert a == b
    assert a != cache_key("iris", "1", {"instances": [[1, 3]], "parameters": {"a": 1, "b": 2}})
    assert a != cache_key("iris", "1", {"instances": [[1, 2]], "parameters": {"a": 1, "b": 3}})


def test_key_differs_per_model_and_per_version() -> None:
    body = {"instances": [[1.0, 2.0]]}
    keys = {cache_key(m, v, body) for m in ("iris", "wine") for v in ("1", "2", None)}
    assert len(keys) == 6


def test_key_accepts_numpy_arrays_as_their_values() -> None:
    assert cache_key("m", None, {"x": np.array([1.5, 2.5])}) == cache_key(
        "m", None, {"x": [1.5, 2.5]}
    )


def test_hits_misses_and_lru_eviction() -> None:
    cache: ResponseCache[str] = ResponseCache(max_entries=2)
    assert cache.get("a") is None
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C")  # evicts b
    assert cache.get("b") is None
    assert cache.get("a") == "A" and cache.get("c") == "C"
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.evictions, stats.size) == (3, 2, 1, 2)


def test_entries_expire_after_the_ttl_exactly() -> None:
    clock = FakeClock()
    cache: ResponseCache[int] = ResponseCache(max_entries=10, ttl=5.0, clock=clock)
    cache.put("k", 1)
    clock.now += 4.999
    assert cache.get("k") == 1
    clock.now += 0.001
    assert cache.get("k") is None
    assert cache.stats.expirations == 1 and cache.stats.size == 0


def test_put_refreshes_the_ttl_and_clear_empties() -> None:
    clock = FakeClock()
    cache: ResponseCache[int] = ResponseCache(max_entries=10, ttl=5.0, clock=clock)
    cache.put("k", 1)
    clock.now += 4
    cache.put("k", 2)
    clock.now += 4
    assert cache.get("k") == 2
    cache.clear()
    assert cache.get("k") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"max_entries": 0}, "max_entries is 0", id="no-entries"),
        pytest.param({"max_entries": 1, "ttl": 0}, "ttl is 0", id="zero-ttl"),
    ],
)
def test_invalid_settings_say_what_is_allowed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResponseCache(**kwargs)
