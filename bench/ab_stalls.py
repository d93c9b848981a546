"""A/B of one stall fix with the loop-lag probe: `python bench/ab_stalls.py [--rounds 2]`.

The gateway (bench/gateway_probe.py --probe, pinned as in run.py) on SQLite and PostgreSQL,
variant A (`A_ENV` below: an experiment set through the environment) and B (as built),
interleaved, wrk at c=64 and c=256 for 5 s each; per run: req/s, p99, CPU µs per request, loop
lag and full (gen 2) collections. Writes bench/results/ab-stalls.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
import procs
import services
from load import run_wrk

# A: the collector as it was before 2026-12-03 (Python's default thresholds); B: as built.
A_ENV = {"BENCH_GC_THRESHOLD": "700,10,10"}
LEVELS = (64, 256)


RESULT = Path(__file__).resolve().parent / "results" / "ab-stalls.json"


async def main(rounds: int) -> None:
    procs.raise_fd_limit()
    procs.pin_self(procs.LOAD_CPU)
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="tollway-ab-") as tmp:
        workdir = Path(tmp)
        stack = procs.Stack(workdir)
        pg = await services.create_pg_database()
        try:
            _, mock = await services.start_mock(stack, "mock")
            urls = {"sqlite": f"sqlite:///{workdir / 'ab.db'}"}
            if pg:
                urls["postgres"] = pg
            keys = {n: await asyncio.to_thread(services.provision, u) for n, u in urls.items()}
            for round_ in range(rounds):
                for backend, url in urls.items():
                    for variant, env in (("A", A_ENV), ("B", {})):
                        proc, target = await services.start_gateway(
                            stack, f"gw-{backend}-{variant}", database_url=url, mock=mock,
                            api_key=keys[backend], probe=True, extra_env=env,
                        )  # fmt: skip
                        await asyncio.to_thread(
                            run_wrk, target, workdir, connections=16, seconds=2, tag="warm"
                        )
                        for level in LEVELS:
                            await compare._lag(target, reset=True)
                            row, cpu_us = await compare.wrk_with_cpu(
                                proc, target, workdir, level=level, seconds=5, tag="ab"
                            )
                            lag = await compare._lag(target, reset=True)
                            result = {
                                "round": round_, "backend": backend, "variant": variant,
                                "c": level, "rps": round(row["rps"]), "p99_ms": row["p99_ms"],
                                "cpu_us": round(cpu_us),
                                "lag": lag["lag_ms"], "late_5": lag["lag_over_ms"]["5"],
                                "gc2": lag["gc"].get("2", {}), "gc1": lag["gc"].get("1", {}),
                                "load": compare.load_average(),
                            }  # fmt: skip
                            print(json.dumps(result), flush=True)
                            out.append(result)
                        stack.stop(proc)
        finally:
            stack.close()
            if pg:
                await services.drop_pg_database(pg)
    RESULT.write_text(json.dumps({"a_env": A_ENV, "runs": out}, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args().rounds))
