#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+: `python3 dev.py run | test | check`.

Creates ./.venv on first use, installs Tollway into it (editable, with the dev extras), then
runs the demo gateway, the test suite, or the linters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
        print("installing tollway and its dependencies into .venv (about a minute) ...", flush=True)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run([*pip, "-q", "--upgrade", "pip"], check=True)
        install([*pip, "-e", f"{ROOT}[dev]"])
        STAMP.touch()


# pip's lines worth showing while it works: one per package fetched, then the install step.
PROGRESS = ("Collecting ", "Building ", "Installing collected packages", "Successfully installed")


def install(command: list[str]) -> None:
    """Run pip, printing one short line per step so a long install is never silent; on
    failure, everything pip said."""
    started = time.monotonic()
    said: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            said.append(line)
            if line.startswith(PROGRESS):
                text = line.strip()
                if len(text) > 100:
                    text = text[:97] + "..."
                print(f"  [{time.monotonic() - started:4.0f}s] {text}", flush=True)
    if pip.returncode != 0:
        sys.stdout.write("".join(said))
        sys.exit(f"pip install failed (exit status {pip.returncode})")
    print(f"  installed in {time.monotonic() - started:.0f}s", flush=True)


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
    for tool in (
        ["ruff", "check", "src", "tests", "bench"],
        ["ruff", "format", "--check", "src", "tests", "bench"],
        ["mypy"],
    ):
        code = subprocess.call([str(BIN / tool[0]), *tool[1:]], cwd=ROOT)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
