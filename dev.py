#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+: `python3 dev.py run | test | check`.

Creates ./.venv on first use, installs Tollway into it (editable, with the dev extras), then
runs the demo gateway, the test suite, or the linters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".tollway-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Tollway needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = ROOT / "pyproject.toml"
    if not STAMP.exists() or STAMP.stat().st_mtime < pyproject.stat().st_mtime:
        print("installing tollway and its dependencies into .venv ...", flush=True)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
        STAMP.touch()


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    rest = sys.argv[2:]
    if command not in {"run", "test", "check"}:
        print(__doc__)
        return 2
    ensure_venv()
    if command == "run":
        return subprocess.call([str(BIN / "tollway"), "demo", *rest], cwd=ROOT)
    if command == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)
    for tool in (["ruff", "check", "src", "tests", "bench"], ["ruff", "format", "--check", "src", "tests", "bench"], ["mypy"]):
        code = subprocess.call([str(BIN / tool[0]), *tool[1:]], cwd=ROOT)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
