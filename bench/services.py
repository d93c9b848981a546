"""The systems under test: the mock upstream, Tollway's gateway (set up through its CLI, on
SQLite or a fresh PostgreSQL database) and LiteLLM's proxy in its own virtualenv."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from procs import GATEWAY_CPU, LOAD_CPU, Proc, Stack, free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_VERSION = "1.106.12"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MODEL = "tollway-demo-chat"
UPSTREAM_MODEL = "demo-chat"
LITELLM_MODEL = "bench-chat"
PORTKEY_DIR = ROOT / "bench" / "portkey"


@dataclass(frozen=True)
class Target:
    """One HTTP endpoint to load: its chat URL, the model it expects, its auth header."""

    name: str
    base: str  # http://127.0.0.1:port
    model: str
    api_key: str | None = None
    pid: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()  # e.g. Portkey's routing headers

    @property
    def chat_url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        headers.update(self.extra_headers)
        return headers

    def body(self, *, stream: bool, max_tokens: int = 16) -> bytes:
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "max_tokens": max_tokens,
        }
        if stream:
            payload["stream"] = True
        return json.dumps(payload, separators=(",", ":")).encode()


async def start_mock(
    stack: Stack, name: str, *, tokens_per_second: float = 0, ttft_ms: float = 0
) -> tuple[Proc, Target]:
    port = free_port()
    argv = [str(VENV_BIN / "tollway"), "mock-provider", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--tokens-per-second", str(tokens_per_second), "--ttft-ms", str(ttft_ms)]
    proc = stack.start(name, argv, cpu=LOAD_CPU)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{base}/health")
    return proc, Target(name, base, UPSTREAM_MODEL, pid=proc.pid)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "tollway"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tollway {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def provision(database_url: str) -> str:
    """Through the CLI: schema, a user with 1,000,000 EUR, a project, an inference key."""
    env = {"TOLLWAY_DATABASE_URL": database_url}
    _cli(env, "init", "--json")
    _cli(env, "users", "add", "bench")
    _cli(env, "projects", "add", "bench")
    _cli(env, "members", "add", "--project", "bench", "--user", "bench", "--role", "member")
    _cli(env, "credits", "add", "1000000", "--user", "bench")
    out = _cli(env, "keys", "create", "--user", "bench", "--project", "bench", "--json")
    return str(json.loads(out)["api_key"])


async def start_gateway(
    stack: Stack,
    name: str,
    *,
    database_url: str,
    mock: Target,
    api_key: str,
    workers: int = 1,
    cpu: int | str = GATEWAY_CPU,
    metrics_token: str | None = None,
    server: str | None = None,
    probe: bool = False,
    extra_env: dict[str, str] | None = None,
) -> tuple[Proc, Target]:
    """`tollway serve`, or with `server` ("uvicorn"/"granian") or `probe` the same app through
    bench/gateway_probe.py (one worker; the loop-lag probe at GET /_bench/lag)."""
    port = free_port()
    env = {
        "TOLLWAY_DATABASE_URL": database_url,
        "TOLLWAY_MOCK_URL": f"{mock.base}/v1",
        "TOLLWAY_LOG_LEVEL": "warning",
    }
    env.update(extra_env or {})
    if metrics_token is not None:  # the endpoint only; metrics are recorded either way
        env["TOLLWAY_METRICS_TOKEN"] = metrics_token
    env.pop("TOLLWAY_PROVIDERS", None)
    if server is None and not probe:
        argv = [str(VENV_BIN / "tollway"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(workers)]
    else:
        argv = [str(VENV_BIN / "python"), str(ROOT / "bench" / "gateway_probe.py")]
        argv += ["--port", str(port), "--server", server or "uvicorn"]
        argv += ["--probe"] if probe else []
    proc = stack.start(name, argv, cpu=cpu, env=env)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{base}/health")
    return proc, Target(name, base, MODEL, api_key=api_key, pid=proc.pid)


async def start_floor(
    stack: Stack,
    mock: Target,
    *,
    name: str = "floor",
    workers: int = 1,
    cpu: int | str = GATEWAY_CPU,
    server: str | None = None,
    client: str | None = None,
) -> tuple[Proc, Target]:
    """The floor (bench/floor.py): a bare CPython proxy in front of the same mock, pinned like
    the gateway, with a key of its own; its HTTP server and upstream client are floor.py's
    defaults unless named."""
    port = free_port()
    api_key = f"sk-floor-{uuid.uuid4().hex}"
    argv = [str(VENV_BIN / "python"), str(ROOT / "bench" / "floor.py"), "--port", str(port)]
    argv += ["--upstream", f"{mock.base}/v1", "--key", api_key]
    argv += ["--model", f"{MODEL}={UPSTREAM_MODEL}", "--workers", str(workers)]
    argv += ["--server", server] if server else []
    argv += ["--client", client] if client else []
    proc = stack.start(name, argv, cpu=cpu)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{base}/health")
    return proc, Target(name, base, MODEL, api_key=api_key, pid=proc.pid)


async def create_pg_database() -> str | None:
    """A fresh database on the local PostgreSQL, or None when it is not reachable."""
    import asyncpg

    name = f"tollway_bench_{uuid.uuid4().hex[:8]}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def install_litellm() -> tuple[str | None, str]:
    """(version, note): the pinned proxy in bench/.venv-litellm, or None and why not."""
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    have = subprocess.run(probe, capture_output=True, text=True, check=False)
    if have.returncode == 0 and have.stdout.strip() == LITELLM_VERSION:
        return LITELLM_VERSION, "already installed"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, f"litellm[proxy]=={LITELLM_VERSION}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        # The exact pin is not on the index: take the newest release there is.
        done = subprocess.run(
            [*pip, "litellm[proxy]"], capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            return None, f"pip install failed: {done.stderr.strip().splitlines()[-1:]}"
    have = subprocess.run(probe, capture_output=True, text=True, check=False)
    version = have.stdout.strip() or None
    return version, "installed" if version == LITELLM_VERSION else "pin unavailable"


async def start_litellm(stack: Stack, workdir: Path, mock: Target) -> tuple[Proc, Target]:
    """LiteLLM's proxy: one worker, no database, no debug logs, same mock. It refuses to start
    without a master key (1.106), so it checks one, like Tollway checks its key."""
    port = free_port()
    master_key = f"sk-bench-{uuid.uuid4().hex}"
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: {mock.base}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {master_key}\n"
        "  disable_spend_logs: true\n"
    )
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DISABLE_SCHEMA_UPDATE": "true",
        "NO_DOCS": "True",
    }
    for var in ("DATABASE_URL", "LITELLM_MASTER_KEY"):
        os.environ.pop(var, None)
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = stack.start("litellm", argv, cpu=GATEWAY_CPU, env=env)
    base = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{base}/health/liveliness", timeout_s=120)
    await asyncio.sleep(1)
    return proc, Target("litellm", base, LITELLM_MODEL, api_key=master_key, pid=proc.pid)


def install_portkey() -> tuple[str | None, str]:
    """(version, note): Portkey's gateway from bench/portkey's lockfile (`npm ci`, into
    bench/portkey/node_modules), or None and why not."""
    installed = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    note = "already installed"
    if not installed.exists():
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=PORTKEY_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"npm ci failed: {exc!r}"[:500]
        if done.returncode != 0:
            return None, f"npm ci failed: {done.stderr.strip().splitlines()[-3:]}"
        note = "installed (npm ci)"
    return str(json.loads(installed.read_text())["version"]), note


async def start_portkey(stack: Stack, mock: Target) -> tuple[Proc, Target]:
    """Portkey's open-source gateway (Node, one process), routed to the same mock by its
    headers (provider openai, custom host = the mock); no config, no key check of its own."""
    port = free_port()
    argv = ["node", str(PORTKEY_DIR / "start.mjs"), f"--port={port}", "--headless"]
    proc = stack.start("portkey", argv, cpu=GATEWAY_CPU, env={"NODE_ENV": "production"})
    base = f"http://127.0.0.1:{port}"
    await wait_ready(proc, f"{base}/", timeout_s=60)
    routing = (("x-portkey-provider", "openai"), ("x-portkey-custom-host", f"{mock.base}/v1"))
    target = Target(
        "portkey", base, UPSTREAM_MODEL, api_key="sk-bench", pid=proc.pid, extra_headers=routing
    )
    return proc, target
