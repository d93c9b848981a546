"""Results as JSON, a Markdown table against the issue's goals, and a PNG plot."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import compare_tables
import second_core

GOAL_P50_MS = 0.5
GOAL_P99_MS = 2.0
GOAL_VS_LITELLM = 50
GOAL_VS_DIRECT = 0.4


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    wrk = shutil.which("wrk")
    wrk_version = "-"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout or out.stderr).split("\n", 1)[0].strip()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {
            p: _version(p)
            for p in (
                *("uvicorn", "fastapi", "starlette", "aiohttp", "sqlalchemy", "uvloop"),
                *("httptools", "orjson", "aiosqlite", "asyncpg"),
            )
        },
        "wrk": wrk_version,
        "pinning": "gateway/floor/LiteLLM on CPU 0 (with two workers: CPUs 0,1); mock, load "
        "generator and harness on CPU 1",
    }


def _f(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _peak(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: r["rps"]) if rows else {"rps": 0.0, "connections": 0}


def _latency_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| target | non-stream p50 | p90 | p99 | added p50 | added p99 "
        "| TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, lat in results["latency"].items():
        over = results["overhead"].get(name)
        ns, tt = lat["non_streaming"], lat["streaming_ttft"]
        add_ns = over["non_streaming"] if over else None
        add_tt = over["streaming_ttft"] if over else None
        lines.append(
            f"| {name} | {_f(ns['p50_ms'])} | {_f(ns['p90_ms'])} | {_f(ns['p99_ms'])} "
            f"| {_f(add_ns['p50_ms']) if add_ns else '-'} "
            f"| {_f(add_ns['p99_ms']) if add_ns else '-'} "
            f"| {_f(tt['p50_ms'])} | {_f(tt['p99_ms'])} "
            f"| {_f(add_tt['p50_ms']) if add_tt else '-'} "
            f"| {_f(add_tt['p99_ms']) if add_tt else '-'} |"
        )
    return lines


def _throughput_table(results: dict[str, Any]) -> list[str]:
    names = list(results["throughput"])
    levels = sorted({r["connections"] for rows in results["throughput"].values() for r in rows})
    lines = [
        "| concurrency | " + " | ".join(f"{n} req/s | {n} p99 ms" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for level in levels:
        cells = []
        for name in names:
            row = next((r for r in results["throughput"][name] if r["connections"] == level), None)
            if row is None:
                cells += ["-", "-"]
            else:
                errors = f" ({row['errors']} err)" if row["errors"] else ""
                cells += [f"{row['rps']:.0f}{errors}", _f(row["p99_ms"])]
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return lines


def vs_floor(results: dict[str, Any]) -> dict[str, Any]:
    """Each gateway against the floor measured in the same run (bench/floor.py): throughput
    as a ratio of the floor's, per concurrency and at the peak, and added latency beside the
    floor's. Empty without a floor."""
    floor_rows = results["throughput"].get("floor")
    floor_over = results["overhead"].get("floor")
    if not floor_rows or floor_over is None:
        return {}
    floor_by_level = {r["connections"]: r["rps"] for r in floor_rows}
    floor_peak = _peak(floor_rows)["rps"]
    out: dict[str, Any] = {}
    for name, rows in results["throughput"].items():
        if not name.startswith("gateway"):
            continue
        over = results["overhead"].get(name)
        levels = {
            r["connections"]: r["rps"] / floor_by_level[r["connections"]]
            for r in rows
            if floor_by_level.get(r["connections"])
        }
        peak = _peak(rows)["rps"]
        added: dict[str, Any] = {}
        if over is not None:
            for key in ("p50_ms", "p99_ms"):
                gateway_ms = over["non_streaming"][key]
                floor_ms = floor_over["non_streaming"][key]
                added[key] = {
                    "gateway": gateway_ms,
                    "floor": floor_ms,
                    "beyond_floor": gateway_ms - floor_ms,
                }
        out[name] = {
            "peak_rps": peak,
            "floor_peak_rps": floor_peak,
            "peak_ratio": peak / floor_peak if floor_peak else math.nan,
            "ratio_by_connections": levels,
            "added": added,
        }
    return out


def _floor_tables(results: dict[str, Any]) -> list[str]:
    comparison = vs_floor(results)
    if not comparison:
        return []
    names = list(comparison)
    floor_rows = {r["connections"]: r["rps"] for r in results["throughput"]["floor"]}
    lines = [
        "", "## Against the floor (a bare CPython proxy, bench/floor.py, same run)", "",
        "Throughput as a ratio of the floor's (1.00 = as fast as a proxy that does nothing "
        "but parse, rewrite the model and re-serialise both ways):", "",
        "| concurrency | floor req/s | " + " | ".join(f"{n} / floor" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]  # fmt: skip
    for level in sorted(floor_rows):
        cells = [_f(comparison[n]["ratio_by_connections"].get(level, math.nan), 3) for n in names]
        lines.append(f"| {level} | {floor_rows[level]:.0f} | " + " | ".join(cells) + " |")
    peaks = [
        f"{comparison[n]['peak_rps']:.0f} = {_f(comparison[n]['peak_ratio'], 3)}" for n in names
    ]
    floor_peak = comparison[names[0]]["floor_peak_rps"]
    lines.append(f"| peak | {floor_peak:.0f} | " + " | ".join(peaks) + " |")
    lines += [
        "", "Added latency (non-streaming, sequential; vs direct to the mock), gateway beside "
        "the floor:", "",
        "| target | added p50 | floor added p50 | beyond the floor | added p99 "
        "| floor added p99 | beyond the floor |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name in names:
        added = comparison[name]["added"]
        if not added:
            continue
        p50, p99 = added["p50_ms"], added["p99_ms"]
        lines.append(
            f"| {name} | {_f(p50['gateway'], 3)} | {_f(p50['floor'], 3)} "
            f"| {_f(p50['beyond_floor'], 3)} | {_f(p99['gateway'], 3)} | {_f(p99['floor'], 3)} "
            f"| {_f(p99['beyond_floor'], 3)} |"
        )
    return lines


def goals(results: dict[str, Any]) -> list[str]:
    """One line per goal of the issue, for each gateway measured."""
    lines = ["| goal | target | measured | met |", "|---|---|---|---|"]
    tp = results["throughput"]
    direct_peak = _peak(tp.get("direct", []))["rps"]
    litellm_peak = _peak(tp.get("litellm", []))["rps"]
    for name, over in results["overhead"].items():
        if not name.startswith("gateway"):
            continue
        p50, p99 = over["non_streaming"]["p50_ms"], over["non_streaming"]["p99_ms"]
        peak = _peak(tp.get(name, []))["rps"]
        lines.append(
            f"| {name}: added p50 | ≤ {GOAL_P50_MS} ms | {_f(p50, 3)} ms "
            f"| {'yes' if p50 <= GOAL_P50_MS else 'no'} |"
        )
        lines.append(
            f"| {name}: added p99 | ≤ {GOAL_P99_MS} ms | {_f(p99, 3)} ms "
            f"| {'yes' if p99 <= GOAL_P99_MS else 'no'} |"
        )
        if litellm_peak:
            ratio = peak / litellm_peak
            met = "yes" if ratio >= GOAL_VS_LITELLM else "no"
            lines.append(
                f"| {name}: peak req/s vs LiteLLM | >= {GOAL_VS_LITELLM}x | {peak:.0f} / "
                f"{litellm_peak:.0f} = {ratio:.1f}x | {met} |"
            )
        floor = vs_floor(results).get(name)
        if floor and floor["floor_peak_rps"]:
            lines.append(
                f"| {name}: peak req/s vs the floor | (reference) | {peak:.0f} / "
                f"{floor['floor_peak_rps']:.0f} = {floor['peak_ratio']:.2f}x | - |"
            )
        if direct_peak:
            ratio = peak / direct_peak
            met = "yes" if ratio >= GOAL_VS_DIRECT else "no"
            lines.append(
                f"| {name}: peak req/s vs direct | >= {GOAL_VS_DIRECT}x | {peak:.0f} / "
                f"{direct_peak:.0f} = {ratio:.2f}x | {met} |"
            )
    leak = results["memory"].get("leak")
    if leak:
        lines.append(
            f"| memory flat over {leak['requests']} requests | ~0 MiB growth "
            f"| {leak['rss_growth_mib']:+.1f} MiB (first→last tenth) "
            f"| {'yes' if abs(leak['rss_growth_mib']) < 5 else 'check'} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    pk = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    out = [
        f"# Tollway benchmark ({meta['mode']}{', only ' + meta['only'] if 'only' in meta else ''}"
        f", {meta['date']})",
        "",
        f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, Linux {meta['kernel']}, "
        f"Python {meta['python']}; {pk}; {meta['wrk']}. {meta['pinning']}. "
        f"Load: {meta['load_generator']}. Run took {meta.get('duration_s', '?')} s.",
    ]
    for peer, label in (("litellm", "LiteLLM"), ("portkey", "Portkey's gateway")):
        if peer in meta:
            out.append(f"{label}: {meta[peer]['version']} ({meta[peer]['note']}).")
    out += ["", "## Goals", "", *goals(results)]
    out += ["", "## Added latency (sequential, one keep-alive connection; ms)", ""]
    out += _latency_table(results)
    out += ["", "## Throughput by concurrency (non-streaming)", "", *_throughput_table(results)]
    out += _floor_tables(results)
    out += compare_tables.markdown(results)
    out += second_core.markdown(results)
    out += ["", "## Streaming under load", ""]
    out += ["| target | streams | streams/s | chunks/s | TTFT p50 | TTFT p99 | errors |"]
    out += ["|---|---|---|---|---|---|---|"]
    for name, s in results["streaming"].items():
        out.append(
            f"| {name} | {s['connections']} | {s['rps']:.0f} | {s['chunks_per_s']:.0f} "
            f"| {_f(s['ttft']['p50_ms'])} | {_f(s['ttft']['p99_ms'])} | {s['errors']} |"
        )
    mem = results["memory"]
    out += ["", "## Memory (gateway RSS, MiB)", ""]
    if "streams" in mem:
        m = mem["streams"]
        out.append(
            f"- {m['connections']} concurrent paced streams (mock saw up to "
            f"{m['max_open_upstream_streams']} open upstream streams): start "
            f"{m['rss_start_mib']:.1f}, peak {m['rss_peak_mib']:.1f}, end {m['rss_end_mib']:.1f}; "
            f"{m['load']['rps']:.0f} streams/s, {m['load']['errors']} errors."
        )
    if "leak" in mem:
        m = mem["leak"]
        out.append(
            f"- {m['requests']} requests in {m['seconds']} s ({m['rps']:.0f} req/s, "
            f"{m['errors']} errors): start {m['rss_start_mib']:.1f}, first tenth "
            f"{m['rss_first_tenth_mib']:.1f}, last tenth {m['rss_last_tenth_mib']:.1f} "
            f"(growth {m['rss_growth_mib']:+.1f})."
        )
    for name, prof in results["profile"].items():
        if "inclusive_pct" not in prof:
            continue
        out += ["", f"## Profile: {name} (py-spy, {prof['samples']} samples, wrk c=64)", ""]
        files = (prof.get("flamegraph_file"), prof.get("raw_file"))
        out += [
            f"Files: `{files[0]}` (flame graph), `{files[1]}` (collapsed stacks), beside this "
            "report.",
            "",
        ]
        if "threads_pct" in prof:  # since 2026-12-03: stages of the event loop's thread
            out += ["| thread | % of the samples that did work |", "|---|---|"]
            out += [f"| {k} | {v} |" for k, v in prof["threads_pct"].items()]
            out += ["", "| stage (event loop thread) | % of its samples |", "|---|---|"]
        else:
            out += ["| inclusive bucket | % of samples |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in prof["inclusive_pct"].items()]
        out += ["", "| top 20 self time (function) | % of samples |", "|---|---|"]
        out += [f"| `{k}` | {v} |" for k, v in prof["top_self_pct"][:20]]
    if results["notes"]:
        out += ["", "## Notes", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    rps_ax, p99_ax, lat_ax, mem_ax = axes.flat
    for name, rows in results["throughput"].items():
        xs = [r["connections"] for r in rows]
        rps_ax.plot(xs, [r["rps"] for r in rows], marker="o", label=name)
        p99_ax.plot(xs, [r["p99_ms"] for r in rows], marker="o", label=name)
    for ax, title in ((rps_ax, "requests/s"), (p99_ax, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent connections")
        ax.set_title(title)
        ax.legend(fontsize=8)
    rps_ax.set_yscale("log")
    p99_ax.set_yscale("log")
    names = list(results["latency"])
    for offset, key in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        values = [results["latency"][n]["non_streaming"][key] for n in names]
        lat_ax.bar([i + offset * 0.27 for i in range(len(names))], values, 0.27, label=key)
    lat_ax.set_xticks([i + 0.27 for i in range(len(names))], names, fontsize=8)
    lat_ax.set_yscale("log")
    lat_ax.set_title("sequential latency, non-streaming (ms)")
    lat_ax.legend(fontsize=8)
    for key, label in (("leak", "many requests"), ("streams", "1,000 concurrent streams")):
        samples = results["memory"].get(key, {}).get("rss_samples", [])
        if samples:
            mem_ax.plot([t for t, _ in samples], [m for _, m in samples], label=label)
    mem_ax.set_title("gateway RSS (MiB) over time (s)")
    mem_ax.set_ylim(bottom=0)
    mem_ax.legend(fontsize=8)
    fig.suptitle(f"Tollway benchmark {results['meta']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = [out_dir / "latest.json", out_dir / "latest.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths[1].write_text(markdown(results))
    png = out_dir / "latest.png"
    if "only" not in results["meta"] and plot(results, png):
        paths.append(png)
    return paths
