"""The tables of bench/compare.py's scenarios in latest.md: step three's goals, CPU per
request, Tollway against its peers, the shutdown checks, the event-loop lag."""

from __future__ import annotations

import math
from typing import Any


def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["rps"] for r in rows), default=0.0)


def step_three_goals(results: dict[str, Any]) -> list[str]:
    """The done-when of performance step three, for each gateway against the floor and the
    peers of the same run (none asserted)."""
    tp, over = results["throughput"], results["overhead"]
    floor_rows = {r["connections"]: r for r in tp.get("floor", [])}
    if not floor_rows:
        return []
    out = ["", "## Step three's goals (ratios to the floor of this run)", ""]
    out += ["| gateway | goal | measured | met |", "|---|---|---|---|"]
    floor_over = over.get("floor", {}).get("non_streaming", {})
    floor_ttft = results["streaming"].get("floor", {}).get("ttft", {}).get("p99_ms")
    for name in [n for n in tp if n.startswith("gateway") and n in over]:
        rows, ns = tp[name], over[name]["non_streaming"]
        ratio = _peak(rows) / max(1e-9, _peak(list(floor_rows.values())))
        out.append(f"| {name} | peak ≥ 0.6x the floor | {ratio:.2f}x | {_yes(ratio >= 0.6)} |")
        beyond = ns["p50_ms"] - floor_over.get("p50_ms", math.nan)
        out.append(
            f"| {name} | added p50 ≤ floor's + 0.3 ms | +{_f(beyond)} ms | {_yes(beyond <= 0.3)} |"
        )
        out.append(
            f"| {name} | added p99 ≤ 2 ms | {_f(ns['p99_ms'])} ms | {_yes(ns['p99_ms'] <= 2)} |"
        )
        p99s = [
            r["p99_ms"] / floor_rows[r["connections"]]["p99_ms"]
            for r in rows
            if r["connections"] in floor_rows and floor_rows[r["connections"]]["p99_ms"]
        ]
        worst = max(p99s, default=math.nan)
        out.append(
            f"| {name} | p99 ≤ 2x the floor's at every concurrency | worst {_f(worst)}x "
            f"({', '.join(_f(p, 1) for p in p99s)}) | {_yes(worst <= 2)} |"
        )
        ttft = results["streaming"].get(name, {}).get("ttft", {}).get("p99_ms")
        if ttft and floor_ttft:
            out.append(
                f"| {name} | 256 streams TTFT p99 ≤ 2x the floor's | {ttft / floor_ttft:.2f}x "
                f"| {_yes(ttft <= 2 * floor_ttft)} |"
            )
        for peer in ("portkey", "litellm"):
            if not tp.get(peer) or peer not in over:
                continue
            cpu = results.get("cpu_per_request_us", {})
            peer_ns = over[peer]["non_streaming"]
            ahead = (
                _peak(rows) > _peak(tp[peer])
                and ns["p50_ms"] < peer_ns["p50_ms"]
                and ns["p99_ms"] < peer_ns["p99_ms"]
            )
            out.append(
                f"| {name} | ahead of {peer} (req/s, added p50, p99) | {_peak(rows):.0f} vs "
                f"{_peak(tp[peer]):.0f} req/s, {_f(ns['p50_ms'])} vs {_f(peer_ns['p50_ms'])}, "
                f"{_f(ns['p99_ms'])} vs {_f(peer_ns['p99_ms'])} ms"
                + (
                    f"; CPU {cpu[name]:.0f} vs {cpu[peer]:.0f} µs/req"
                    if name in cpu and peer in cpu
                    else ""
                )
                + f" | {_yes(ahead)} |"
            )
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def markdown(results: dict[str, Any]) -> list[str]:
    """CPU per request of every server measured, peers, shut-down checks, loop lag."""
    out: list[str] = step_three_goals(results)
    cpu = results.get("cpu_per_request_us", {})
    if cpu:
        out += ["", "## CPU per request (server process CPU s / requests, whole throughput run)"]
        out += ["", "| server | CPU µs / request | peak req/s | load average at its start |"]
        out += ["|---|---|---|---|"]
        for name, us in cpu.items():
            peak = _peak(results["throughput"].get(name, []))
            load = results.get("load_average", {}).get(name, "-")
            out.append(f"| {name} | {us:.0f} | {peak:.0f} | {load} |")
    peers = [n for n in ("litellm", "portkey") if results["throughput"].get(n)]
    gateways = [n for n in results["throughput"] if n.startswith("gateway")]
    if peers and gateways:
        out += ["", "## Tollway against its peers (same run, same mock, same core)", ""]
        out += ["| gateway | peer | peak req/s (ratio) | added p50 ms | added p99 ms |"]
        out += ["|---|---|---|---|---|"]
        over = results["overhead"]
        for gateway in gateways:
            for name in peers:
                ratio = _peak(results["throughput"][gateway]) / max(
                    1e-9, _peak(results["throughput"][name])
                )
                p50 = [
                    over.get(n, {}).get("non_streaming", {}).get("p50_ms") for n in (gateway, name)
                ]
                p99 = [
                    over.get(n, {}).get("non_streaming", {}).get("p99_ms") for n in (gateway, name)
                ]
                out.append(
                    f"| {gateway} | {name} | {_peak(results['throughput'][gateway]):.0f} vs "
                    f"{_peak(results['throughput'][name]):.0f} ({ratio:.1f}x) "
                    f"| {_f(p50[0])} vs {_f(p50[1])} | {_f(p99[0])} vs {_f(p99[1])} |"
                )
    for server, check in results.get("shutdown", {}).items():
        out.append(
            f"- SIGTERM with 8 streams in flight, gateway under {server}: streams "
            f"{check['streams']}, exited after {check['exit_s']} s with code {check['exit_code']}"
            f"; a new request 0.2 s after the signal: {check['new_request_during_drain']}."
        )
    for name, rows in results.get("stalls", {}).items():
        out += ["", f"## Event-loop lag: {name} (bench/gateway_probe.py, 1 ms ticks)", ""]
        out += ["| load | req/s | p99 ms | CPU µs/req | lag p50 | p99 | p99.9 | max "
                "| ticks late > 5 ms / > 20 ms | gc gen2 n, total ms | load avg |"]  # fmt: skip
        out += ["|---|---|---|---|---|---|---|---|---|---|---|"]
        for level, row in rows.items():
            if "lag" not in row:
                continue
            lag = row["lag"]
            gen2 = lag["gc"].get("2", {})
            out.append(
                f"| {level} | {row.get('rps', '-')} | {_f(row['p99_ms'])} "
                f"| {row.get('cpu_us_per_request', '-')} | {lag['lag_ms']['p50']} "
                f"| {lag['lag_ms']['p99']} | {lag['lag_ms']['p999']} | {lag['lag_ms']['max']} "
                f"| {lag['lag_over_ms']['5']} / {lag['lag_over_ms']['20']} "
                f"| {gen2.get('n', 0)}, {gen2.get('total_ms', 0)} | {row['load_average']} |"
            )
        worst = rows.get("c256", {}).get("lag", {})
        if worst.get("stalls_loop_stack"):
            out += ["", "Where the loop thread was when it stalled > 5 ms (c=256, samples):", ""]
            out += [f"- {n}x `{where}`" for where, n in worst["stalls_loop_stack"][:8]]
            out += ["", "Other threads running Python then:", ""]
            out += [f"- {n}x `{where}`" for where, n in worst["stalls_other_threads"][:5]]
    return out
