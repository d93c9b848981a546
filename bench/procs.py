"""Child processes of the benchmark: start pinned to a core, wait until they answer, sample
their memory, stop them. Every process started here is stopped by the same `Stack`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

GATEWAY_CPU = 0
LOAD_CPU = 1
BOTH_CPUS = "0,1"  # `--workers 2` runs: the gateway may use either core (beside mock and wrk)
# The cores this machine lets us use, read once at import, before `pin_self` narrows the
# harness's own affinity to LOAD_CPU (after that, sched_getaffinity(0) says 1 core).
MACHINE_CPUS = frozenset(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_count() -> int:
    """The machine's usable cores: not the harness's own affinity, which is LOAD_CPU once
    pinned (reading that made every child run unpinned on CPU 1, the harness's core)."""
    return len(MACHINE_CPUS)


def pinned(cpu: int | str, argv: Sequence[str]) -> list[str]:
    """Prefix argv with taskset (one core, or a list like "0,1") when there is more than one
    core to choose from; taskset sets the child's affinity afresh, wider than ours."""
    if cpu_count() > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *argv]
    return list(argv)


def pin_self(cpu: int) -> None:
    if cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def raise_fd_limit() -> None:
    """1,000 concurrent streams need ~3,000 descriptors in the gateway; children inherit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 65536:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and all its descendants alive now (granian's workers are
    not multiprocessing children, so `worker_cpu_seconds` does not see them)."""
    return cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in children(pid))


def worker_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each uvicorn worker under a supervisor (its multiprocessing children,
    the resource tracker left out); {} when `pid` has no workers."""
    out = {}
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out[child] = cpu_seconds(child)
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def harness_cpu_seconds() -> float:
    """This process (the harness, its aiohttp client) and its reaped children (wrk runs)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL server process (any client's work, not only ours)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                total += cpu_seconds(int(comm.parent.name))
        except OSError:
            continue
    return total


@dataclass
class CpuShare:
    """Where the machine's CPU went during one measurement, in cores (CPU seconds / wall
    seconds): the server's workers, the mock, wrk + harness, the PostgreSQL server, and
    everything else (other people's work on a shared machine, kernel time for loopback
    traffic not charged to a process). Read at `start()` and at `stop()`."""

    server_pid: int
    mock_pid: int | None
    _start: dict[str, Any] = field(default_factory=dict)

    def _read(self) -> dict[str, Any]:
        return {
            "wall": time.monotonic(),
            "machine": machine_busy_seconds(),
            # uvicorn's workers, or the server's process tree as one (one process, or
            # granian's supervisor and its workers, which are not multiprocessing children)
            "workers": worker_cpu_seconds(self.server_pid)
            or {self.server_pid: tree_cpu_seconds(self.server_pid)},
            "mock": cpu_seconds(self.mock_pid) if self.mock_pid else 0.0,
            "load": harness_cpu_seconds(),
            "postgres": postgres_cpu_seconds(),
        }

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, Any]:
        end, begin = self._read(), self._start
        wall = end["wall"] - begin["wall"]
        workers = [
            (end["workers"][pid] - begin["workers"].get(pid, 0.0)) / wall
            for pid in sorted(end["workers"])
        ]
        mock = (end["mock"] - begin["mock"]) / wall
        load = (end["load"] - begin["load"]) / wall
        machine = (end["machine"] - begin["machine"]) / wall
        postgres = max(0.0, end["postgres"] - begin["postgres"]) / wall
        return {
            "seconds": round(wall, 1),
            "machine_busy_cores": round(machine, 2),
            "worker_cores": [round(w, 2) for w in workers],
            "mock_cores": round(mock, 2),
            "load_cores": round(load, 2),
            "postgres_cores": round(postgres, 2),
            "other_cores": round(max(0.0, machine - sum(workers) - mock - load - postgres), 2),
        }


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


@dataclass
class Stack:
    """Owns the processes of one run; `close()` stops them in reverse order."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | str,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            pinned(cpu, argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=self.workdir,
        )
        log.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


async def wait_ready(proc: Proc, url: str, timeout_s: float = 60.0) -> None:
    """Poll a GET url until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {timeout_s:.0f}s:\n{proc.log_tail()}")


@dataclass
class RssSampler:
    """Samples a process's RSS every `interval_s` in the background: (seconds, MiB) pairs."""

    pid: int
    interval_s: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _started: float = 0.0

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._started, rss_mib(self.pid)))
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> list[tuple[float, float]]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append((time.monotonic() - self._started, rss_mib(self.pid)))
        return self.samples
