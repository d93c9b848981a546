"""`tollway serve` as a real process: its start-up banner, its request lines on stderr (text
and JSON), and not one key secret in everything it wrote over a run with failures."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from tests.support.databases import postgres_database
from tests.support.mock_server import running_mock
from tests.support.processes import serve_logged, tollway
from tollway.observe.banner import safe_database_url


def _exercise(root: str, key: str, bogus: str, database_url: str) -> list[str]:
    """Management calls, a 401, a 404, a 402, then (with credits) a served request; returns
    the response ids of the inference requests."""
    headers = {"Authorization": f"Bearer {key}"}
    chat = {"model": "tollway-demo-chat", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=root, timeout=10) as client:
        assert client.get("/v1/manage/api-keys", headers=headers).status_code == 200
        assert client.get("/v1/user/balance", headers={"Authorization": bogus}).status_code == 401
        assert client.post("/v1/chat/completions", json=chat, headers=headers).status_code == 402
        assert client.get("/v1/no-such-path").status_code == 404
        result = tollway("credits", "add", "--user", "admin", "1", database_url=database_url)
        assert result.returncode == 0, result.stderr
        served = client.post("/v1/chat/completions", json=chat, headers=headers)
        assert served.status_code == 200, served.text
        unknown = client.post("/v1/chat/completions", json=chat | {"model": "x"}, headers=headers)
        assert unknown.status_code == 404
    return [served.headers["x-request-id"], unknown.headers["x-request-id"]]


def _init(database_url: str) -> str:
    result = tollway("init", "--json", database_url=database_url)
    assert result.returncode == 0, result.stderr
    key: str = orjson.loads(result.stdout)["api_key"]
    return key


def test_text_logs_and_the_demo_banner(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    key = _init(database_url)
    bogus = "Bearer tw-" + "0" * 43
    log = tmp_path / "stderr.log"
    with (
        running_mock() as mock_url,
        serve_logged(database_url, log, TOLLWAY_MOCK_URL=mock_url) as root,
    ):
        ids = _exercise(root, key, bogus, database_url)
    text = log.read_text()
    assert key not in text and bogus.split()[1] not in text
    banner = text[: text.index("address:")]
    assert "Tollway 0.1.0 starting" in banner
    assert "BUILT-IN DEMO REGISTRY" in banner
    assert "tollway-demo-chat" in banner and "demo-eu" in banner
    assert f"database:  {database_url}" in banner
    assert "WARNING tollway built-in demo registry" in text
    assert "workers:   1" in text and "metrics:   off" in text and "tracing:   off" in text
    request_lines = [line for line in text.splitlines() if " tollway.request request " in line]
    assert len(request_lines) >= 7  # /health polls too
    served = next(line for line in request_lines if f"request_id={ids[0]}" in line)
    for field in ("status=200", "provider=", "prompt_tokens=", "credits=", "usage_source="):
        assert field in served
    assert not any(" uvicorn.access " in line for line in text.splitlines())


async def test_json_logs_and_a_masked_database_password(tmp_path: Path) -> None:
    async with postgres_database() as url:
        # Trust authentication ignores the password: it is there to be hidden.
        with_password = url.replace("postgres@", "postgres:hunter2-pw@")
        key = _init(with_password)
        log = tmp_path / "stderr.log"
        bogus = "Bearer tw-" + "1" * 43
        with (
            running_mock() as mock_url,
            serve_logged(
                with_password, log, TOLLWAY_MOCK_URL=mock_url, TOLLWAY_LOG_FORMAT="json"
            ) as root,
        ):
            ids = _exercise(root, key, bogus, with_password)
    text = log.read_text()
    assert "hunter2-pw" not in text and key not in text and bogus[7:] not in text
    entries = [orjson.loads(line) for line in text.splitlines()]  # every line is JSON
    banner = next(e for e in entries if e["message"] == "tollway starting")
    assert banner["database"] == safe_database_url(with_password)
    assert "***" in banner["database"]
    assert banner["registry"] == "built-in demo registry"
    assert "tollway-demo-chat" in banner["models"] and "demo-eu" in banner["providers"]
    assert banner["workers"] == 1 and banner["address"].startswith("http://127.0.0.1:")
    assert (banner["metrics"], banner["tracing"]) == (False, False)
    lines = {e["request_id"]: e for e in entries if e["message"] == "request"}
    served, unknown = lines[ids[0]], lines[ids[1]]
    assert (served["status"], served["outcome"], served["key_name"]) == (200, "success", "default")
    assert served["credits"] > 0 and served["provider"].startswith("demo-")
    assert unknown["status"] == 404 and unknown["error"].startswith("model 'x'")
