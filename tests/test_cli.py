from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.support.processes import free_port, serve_process, tollway
from tollway.keys.secrets import KEY_PREFIX


def _one_line_error(result: object) -> str:
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return str(lines[0])


def test_cli_end_to_end(database_url: str) -> None:
    first = tollway("init", "--json", database_url=database_url)
    assert first.returncode == 0, first.stderr
    created = orjson.loads(first.stdout)
    assert created["user"] == "admin" and created["project"] == "default"
    assert created["api_key"].startswith(KEY_PREFIX)

    again = tollway("init", "--json", database_url=database_url)
    assert again.returncode == 0
    assert KEY_PREFIX not in again.stdout + again.stderr
    repeated = orjson.loads(again.stdout)
    assert repeated["api_key"] is None
    assert "already initialised" in repeated["message"]

    plain_again = tollway("init", database_url=database_url)
    assert plain_again.returncode == 0 and KEY_PREFIX not in plain_again.stdout

    assert tollway("users", "add", "bob", database_url=database_url).returncode == 0
    assert tollway("projects", "add", "research", database_url=database_url).returncode == 0
    member = tollway(
        "members",
        "add",
        "--project",
        "research",
        "--user",
        "bob",
        "--role",
        "member",
        database_url=database_url,
    )
    assert member.returncode == 0, member.stderr
    key = tollway(
        "keys",
        "create",
        "--user",
        "bob",
        "--project",
        "research",
        "--name",
        "bob-key",
        "--management",
        "--json",
        database_url=database_url,
    )
    assert key.returncode == 0, key.stderr
    key_body = orjson.loads(key.stdout)
    assert set(key_body) == {"name", "api_key", "created_at", "is_management_key"}
    assert key_body["is_management_key"] is True
    topped = tollway("credits", "add", "--user", "bob", "12.5", database_url=database_url)
    assert topped.returncode == 0, topped.stderr

    with serve_process(database_url) as (root, _):
        balance = httpx.get(
            f"{root}/v1/user/balance", headers={"Authorization": f"Bearer {key_body['api_key']}"}
        )
        assert balance.json() == {"current_balance": 12.5, "currency": "EUR"}
        config = httpx.get(
            f"{root}/v1/project-configs",
            headers={"Authorization": f"Bearer {created['api_key']}"},
        )
        assert config.status_code == 200


def test_cli_errors_are_one_line(database_url: str) -> None:
    assert tollway("init", database_url=database_url).returncode == 0
    assert "unknown user" in _one_line_error(
        tollway("credits", "add", "--user", "ghost", "1", database_url=database_url)
    )
    for amount in ("abc", "-1", "0", "1.0000001", "nan"):
        _one_line_error(
            tollway("credits", "add", "--user", "admin", amount, database_url=database_url)
        )
    assert "unknown project" in _one_line_error(
        tollway("keys", "create", "--user", "admin", "--project", "nope", database_url=database_url)
    )
    assert tollway("users", "add", "solo", database_url=database_url).returncode == 0
    assert "not a member" in _one_line_error(
        tollway(
            "keys", "create", "--user", "solo", "--project", "default", database_url=database_url
        )
    )
    assert "role" in _one_line_error(
        tollway(
            "members",
            "add",
            "--project",
            "default",
            "--user",
            "solo",
            "--role",
            "owner",
            database_url=database_url,
        )
    )
    assert "already exists" in _one_line_error(
        tollway("users", "add", "solo", database_url=database_url)
    )
    bad_url = tollway("init", database_url="mysql://x")
    assert "TOLLWAY_DATABASE_URL" in _one_line_error(bad_url)
    bad_registry = tollway("init", database_url=database_url, TOLLWAY_PROVIDERS="/nonexistent.yaml")
    assert bad_registry.returncode == 0  # init does not need the registry
    serve = tollway(
        "serve", "--port", "0", database_url=database_url, TOLLWAY_PROVIDERS="/nonexistent.yaml"
    )
    assert "/nonexistent.yaml" in _one_line_error(serve)


def test_key_deleted_through_one_replica_is_refused_by_another(database_url: str) -> None:
    created = orjson.loads(tollway("init", "--json", database_url=database_url).stdout)
    admin = {"Authorization": f"Bearer {created['api_key']}"}
    with serve_process(database_url) as (a, _), serve_process(database_url) as (b, _):
        made = httpx.post(
            f"{a}/v1/manage/api-keys",
            json={"name": "temp", "is_management_key": True},
            headers=admin,
        )
        temp = {"Authorization": f"Bearer {made.json()['api_key']}"}
        assert httpx.get(f"{b}/v1/manage/api-keys", headers=temp).status_code == 200
        gone = httpx.request(
            "DELETE", f"{a}/v1/manage/api-keys", json={"name": "temp"}, headers=admin
        )
        assert gone.status_code == 200
        assert httpx.get(f"{b}/v1/manage/api-keys", headers=temp).status_code == 401
        assert httpx.get(f"{a}/v1/manage/api-keys", headers=temp).status_code == 401


def _wait_for_health(root: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo exited early"
        try:
            if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the demo did not become ready")


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_second_demo_checks_its_ports_before_replacing_the_key(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"
    port, mock_port = free_port(), free_port()
    env = os.environ | {"TOLLWAY_DATABASE_URL": database_url}
    env.pop("TOLLWAY_MOCK_URL", None)
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tollway",
            "demo",
            "--port",
            str(port),
            "--mock-port",
            str(mock_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the demo's own mock provider is stopped with it
    )
    try:
        assert demo.stdout is not None
        key = demo.stdout.readline().strip()
        assert key.startswith(KEY_PREFIX)
        root = f"http://127.0.0.1:{port}"
        _wait_for_health(root, demo)
        headers = {"Authorization": f"Bearer {key}"}
        chat = httpx.post(
            f"{root}/v1/chat/completions",
            json={"model": "tollway-demo-chat", "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
            timeout=30,
        )
        assert chat.status_code == 200, chat.text  # the demo's mock answers through it

        gateway_taken = tollway(
            "demo",
            "--port",
            str(port),
            "--mock-port",
            str(free_port()),
            database_url=database_url,
        )
        assert f"gateway port 127.0.0.1:{port} is not available" in _one_line_error(gateway_taken)
        mock_taken = tollway(
            "demo",
            "--port",
            str(free_port()),
            "--mock-port",
            str(mock_port),
            database_url=database_url,
        )
        assert f"mock provider port 127.0.0.1:{mock_port}" in _one_line_error(mock_taken)
        assert "must differ" in _one_line_error(
            tollway("demo", "--port", "9", "--mock-port", "9", database_url=database_url)
        )
        # Nothing changed: the running demo's key still works and is still the only demo key.
        assert httpx.get(f"{root}/v1/user/balance", headers=headers).status_code == 200
        keys = orjson.loads(tollway("keys", "list", "--json", database_url=database_url).stdout)
        assert [k["name"] for k in keys["api_keys"]] == ["default"]
        # Stopping the demo (SIGTERM to it alone) stops its mock provider too.
        demo.terminate()
        assert demo.wait(timeout=30) != 0
        deadline = time.monotonic() + 15
        while _port_in_use(mock_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_in_use(mock_port), "the demo's mock provider outlived it"
    finally:
        try:
            os.killpg(demo.pid, signal.SIGKILL)  # whatever of the demo's group is left
        except ProcessLookupError:
            pass
        demo.wait()
        if demo.stdout:
            demo.stdout.close()


def test_ctrl_c_on_dev_py_run_stops_the_gateway_and_the_mock(tmp_path: Path) -> None:
    """`python3 dev.py run`, then Ctrl-C (SIGINT to dev.py; the demo runs in a process
    group of its own, so it gets exactly one stop signal, from dev.py): the gateway and the
    mock provider it started both stop, and dev.py exits 130. Uses the project's .venv as
    it is (dev.py installs nothing when it is up to date)."""
    root_dir = Path(__file__).parents[1]
    if not (root_dir / ".venv" / "bin" / "tollway").exists():
        raise AssertionError("no .venv with tollway: run the suite through `python3 dev.py test`")
    port, mock_port = free_port(), free_port()
    env = os.environ | {"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    env.pop("TOLLWAY_MOCK_URL", None)
    dev = subprocess.Popen(
        [sys.executable, "dev.py", "run", "--port", str(port), "--mock-port", str(mock_port)],
        cwd=root_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert dev.stdout is not None
        key = ""
        while not key.startswith(KEY_PREFIX):
            line = dev.stdout.readline()
            assert line, "dev.py run ended before printing a key"
            key = line.strip()
        root = f"http://127.0.0.1:{port}"
        _wait_for_health(root, dev)
        chat = httpx.post(
            f"{root}/v1/chat/completions",
            json={"model": "tollway-demo-chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert chat.status_code == 200, chat.text
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 130
        deadline = time.monotonic() + 15
        while (_port_in_use(port) or _port_in_use(mock_port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_in_use(port), "the gateway outlived dev.py"
        assert not _port_in_use(mock_port), "the mock provider outlived dev.py"
    finally:
        if dev.poll() is None:
            dev.kill()
        dev.wait()
        if dev.stdout:
            dev.stdout.close()
