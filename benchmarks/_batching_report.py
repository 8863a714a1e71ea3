"""The batching runner's tables: every cell, the ratios, the latency bound, and where a batched
request's time goes."""

from __future__ import annotations

from benchmarks._batching_servers import Target


def report(
    rows: list[tuple[Target, int, dict]],
    concs: list[int],
    predict_ms: dict[str, float],
    batch: int,
    latency_ms: float,
) -> None:
    print(
        "\n| model | server | batching | conc | req/s | p50 ms | p99 ms | server CPU µs/req "
        "| rows/call | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    cell: dict[tuple[str, str, str, int], dict] = {}
    for t, c, r in rows:
        cell[(t.model, t.server, t.batching.split()[0], c)] = r
        if not r:
            print(f"| {t.model} | {t.server} | {t.batching} | {c} | failed | | | | | |")
            continue
        rpc = f"{r['rows_per_call']:.1f}" if "rows_per_call" in r else "–"
        print(
            f"| {t.model} | {t.server} | {t.batching} | {c} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r.get('server_cpu_us_per_req', 0):.0f} | {rpc} | {r.get('errors', 0)} |"
        )

    def ratio(a: tuple[str, str, str], b: tuple[str, str, str], c: int) -> str:
        x, y = cell.get((*a, c)), cell.get((*b, c))
        return f"{x['rps'] / y['rps']:.2f}×" if x and y and y.get("rps") else "–"

    print("\n| ratio (req/s) | " + " | ".join(f"c={c}" for c in concs) + " |")
    print("|---|" + "---|" * len(concs))
    for label, a, b in (
        (
            "mlp knserve batched / unbatched (goal ≥ 3× at c=64)",
            ("mlp", "knserve", "on"),
            ("mlp", "knserve", "off"),
        ),
        ("iris knserve batched / unbatched", ("iris", "knserve", "on"), ("iris", "knserve", "off")),
        (
            "iris knserve batched / bare-uvicorn ceiling (goal > 1× at c=64)",
            ("iris", "knserve", "on"),
            ("iris", "uvicorn-raw", "ceiling"),
        ),
        (
            "iris knserve unbatched / bare-uvicorn ceiling",
            ("iris", "knserve", "off"),
            ("iris", "uvicorn-raw", "ceiling"),
        ),
        (
            "iris knserve batched / MLServer adaptive",
            ("iris", "knserve", "on"),
            ("iris", "mlserver", "adaptive"),
        ),
        (
            "iris MLServer adaptive / MLServer off",
            ("iris", "mlserver", "adaptive"),
            ("iris", "mlserver", "off"),
        ),
    ):
        print(f"| {label} | " + " | ".join(ratio(a, b, c) for c in concs) + " |")
    print(
        f"\n| knserve batched | predict 1 row ms | predict {batch} rows ms | bound: {latency_ms:g} ms "
        "+ batch predict | " + " | ".join(f"p99 c={c}" for c in concs) + " |"
    )
    print("|---|---|---|---|" + "---|" * len(concs))
    for model in ("mlp", "iris"):
        one, full = predict_ms.get(f"{model}:1"), predict_ms.get(f"{model}:{batch}")
        if one is None or full is None:
            continue
        bound = latency_ms + full
        p99s = [cell.get((model, "knserve", "on", c), {}).get("p99_ms") for c in concs]
        marks = [f"{p:.2f} ({'≤' if p <= bound else '>'})" if p else "–" for p in p99s]
        print(f"| {model} | {one:.3f} | {full:.3f} | {bound:.2f} | " + " | ".join(marks) + " |")
    # Where a batched request's time goes: in the batcher (joining a batch to its answer, from the
    # server's own histogram) against the whole request as the client saw it. A closed loop of c
    # clients at r req/s averages c / r per request (Little's law), whatever the batcher does.
    print(
        "\n| knserve batched | conc | batcher: wait + predict, mean ms | request mean ms (client) "
        "| c ÷ req/s ms (Little) | p99 ms |\n|---|---|---|---|---|---|"
    )
    for model in ("mlp", "iris"):
        for c in concs:
            batched = cell.get((model, "knserve", "on", c))
            if not batched or "batcher_ms" not in batched:
                continue
            print(
                f"| {model} | {c} | {batched['batcher_ms']:.2f} "
                f"| {batched.get('lat_mean_ms', 0):.2f} "
                f"| {c / batched['rps'] * 1000:.2f} | {batched['p99_ms']:.2f} |"
            )
