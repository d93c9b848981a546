#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+:

    python3 dev.py run [--port 8080] [--mock-port 9100]   the demo gateway (serving install)
    python3 dev.py tollway ARGS...                         any `tollway` command, e.g. `keys list`
    python3 dev.py test [PYTEST ARGS]                      the test suite (adds the [dev] extras)
    python3 dev.py check                                   ruff + mypy + import contracts

Creates ./.venv on first use and installs Tollway into it (editable), with uv (pip where uv
cannot be had, or with TOLLWAY_INSTALLER=pip). `run` and `tollway` install only what serving
needs; `test` and `check` add the development extras once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".tollway-installed"  # holds the extras installed ("" or "dev")


def ensure_venv(extras: str) -> None:
    """A .venv with Tollway installed, with at least `extras` ("" = serving only)."""
    if sys.version_info < (3, 11):
        sys.exit("Tollway needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        # Without pip when uv will install (pip's own install into .venv takes ~6 s here).
        venv.EnvBuilder(with_pip=bundled_pip() is None or not use_uv()).create(VENV)
    pyproject = ROOT / "pyproject.toml"
    installed = STAMP.read_text().strip() if STAMP.exists() else None
    fresh = installed is not None and STAMP.stat().st_mtime >= pyproject.stat().st_mtime
    if fresh and (installed == extras or installed == "dev"):
        return
    wanted = extras or ("dev" if installed == "dev" else "")  # never drop the dev tools
    what = "tollway and the development tools" if wanted else "tollway (serving only)"
    print(f"installing {what} into .venv ...", flush=True)
    target = ["-e", f"{ROOT}[{wanted}]" if wanted else str(ROOT)]
    uv = installer()
    if uv is None or install([*uv, *target], env=uv_environment()) != 0:
        if uv is not None:
            print("uv could not install it; trying pip ...", flush=True)
        if not (BIN / "pip").exists():
            python = str(BIN / "python")
            subprocess.check_call([python, "-m", "ensurepip"], stdout=subprocess.DEVNULL)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        if install([*pip, *target]) != 0:
            sys.exit("pip install failed")
    STAMP.write_text(wanted + "\n")


# uv installs the packages: it downloads them in parallel and does not compile bytecode up
# front, so a fresh serving install takes ~3 s where pip takes ~25 s (pip fetches one package
# after another, then compiles every module). pip fetches this pinned uv into .venv once;
# TOLLWAY_INSTALLER=pip, or a machine where uv cannot be had, installs with pip instead.
UV = "uv==0.13.9"


def use_uv() -> bool:
    return os.environ.get("TOLLWAY_INSTALLER", "uv") != "pip"


def bundled_pip() -> Path | None:
    """The pip wheel this Python carries for ensurepip: pip runs from it as it is
    (`python pip.whl/pip ...`), so fetching uv needs no pip installed in .venv."""
    try:
        import ensurepip
    except ImportError:  # some distributions ship Python without it
        return None
    wheels = sorted(Path(ensurepip.__file__).parent.glob("_bundled/pip-*.whl"))
    return wheels[-1] if wheels else None


def installer() -> list[str] | None:
    """The uv command that installs into .venv, or None to use pip."""
    if not use_uv():
        return None
    uv = BIN / ("uv.exe" if os.name == "nt" else "uv")
    if not uv.exists():
        wheel = bundled_pip()
        pip = [str(wheel / "pip")] if wheel and not (BIN / "pip").exists() else ["-m", "pip"]
        fetch = [str(BIN / "python"), *pip, "install", "-q", "--disable-pip-version-check"]
        subprocess.call([*fetch, UV], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not uv.exists():
        return None
    return [str(uv), "pip", "install", "--python", str(BIN / "python")]


def uv_environment() -> dict[str, str]:
    """The environment for uv: a pip index set for pip (PIP_INDEX_URL) is uv's index too."""
    env = dict(os.environ)
    if "PIP_INDEX_URL" in env and "UV_DEFAULT_INDEX" not in env:
        env["UV_DEFAULT_INDEX"] = env["PIP_INDEX_URL"]
    return env


# The installer's lines worth showing while it works (pip: one per package fetched, then the
# install step; uv: one per phase).
PROGRESS = (
    "Collecting ",
    "Building ",
    "Installing collected packages",
    "Successfully installed",
    "Resolved ",
    "Prepared ",
    "Installed ",
)


def install(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run the installer, printing one short line per step so a long install is never
    silent; on failure, everything it said. Returns its exit status."""
    started = time.monotonic()
    said: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
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
        print(f"  {command[0]} exited with status {pip.returncode}", flush=True)
        return pip.returncode
    print(f"  installed in {time.monotonic() - started:.0f}s", flush=True)
    return 0


def supervise(command: list[str]) -> int:
    """Run a long-lived command (the demo) in its own process group and pass it exactly one
    stop signal: Ctrl-C here, or SIGTERM/SIGINT/SIGHUP sent to this process, reaches the
    demo once, and the demo stops its gateway and its mock provider before we exit."""
    child = subprocess.Popen(command, cwd=ROOT, process_group=0)
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            child.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        else:  # asked twice: do not wait for a graceful end
            child.kill()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    return 130 if stopping and stopping[0] == signal.SIGINT else code


def parallel(args: list[str]) -> list[str]:
    """The suite on every core and one more worker (pytest-xdist), unless the caller chose:
    `-n 0` or `-p no:xdist` runs it in one process (a debugger, `-x` on one test)."""
    chose = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args)
    if chose or "no:xdist" in args:
        return args
    # One worker more than cores: the tests wait on the processes they start (servers, CLI
    # commands, real faults), so one worker a core left the cores idle a third of the time
    # (130 CLI and fault tests on 2 cores: 148 s with 2 workers, 110 s with 3, 107 s with 4).
    # worksteal: a worker that runs dry takes tests queued on another, so one long test (the
    # CLI and fault tests take 5-25 s) does not leave a core idle at the end.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ["-n", str((cores or 1) + 1), "--dist", "worksteal", *args]


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    rest = sys.argv[2:]
    if command not in {"run", "tollway", "test", "check"}:
        print(__doc__)
        return 2
    ensure_venv("dev" if command in {"test", "check"} else "")
    if command == "run":
        return supervise([str(BIN / "tollway"), "demo", *rest])
    if command == "tollway":
        return subprocess.call([str(BIN / "tollway"), *rest], cwd=ROOT)
    if command == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *parallel(rest)], cwd=ROOT)
    for tool in (
        ["ruff", "check", "src", "tests", "bench"],
        ["ruff", "format", "--check", "src", "tests", "bench"],
        ["mypy"],
        ["lint-imports", "--no-cache"],  # the import contracts of pyproject.toml
    ):
        code = subprocess.call([str(BIN / tool[0]), *tool[1:]], cwd=ROOT)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
