"""Real command-line clients from npm (Codex CLI, Claude Code), installed pinned into a cache
folder of the checkout and run against a gateway on loopback.

A client that cannot be installed fails the test that needs it — never a skip: CI reaches the
npm registry, and a pinned version that disappeared must be noticed, not hidden.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "node-clients"
INSTALL_TIMEOUT_S = 600


class ClientInstallFailed(AssertionError):
    """npm could not install a pinned client (an AssertionError, so the test fails)."""


def npm_client(package: str, version: str, binary: str) -> Path:
    """The path of `binary` from `package@version`, installed once into its own prefix
    (a lock keeps parallel test workers from installing the same one twice)."""
    npm = shutil.which("npm")
    if npm is None:
        raise ClientInstallFailed(f"npm is not on PATH: cannot install {package}@{version}")
    prefix = CACHE / f"{package.replace('/', '+')}@{version}"
    executable = prefix / "node_modules" / ".bin" / binary
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if executable.exists():
            return executable
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                str(prefix),
                f"{package}@{version}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
            env=os.environ | {"npm_config_update_notifier": "false"},
        )
        if done.returncode != 0 or not executable.exists():
            tail = (done.stdout + done.stderr)[-2000:]
            raise ClientInstallFailed(
                f"npm install {package}@{version} failed (exit {done.returncode}): {tail}"
            )
    return executable
