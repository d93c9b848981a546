from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.mock_server import running_mock
from tests.support.processes import free_port, tollway
from tollway.providers.mock_settings import MockSettings


def endpoint(provider: str, upstream: str = "demo-chat") -> dict[str, Any]:
    return {
        "provider": provider,
        "upstream_model": upstream,
        "pricing": {"input_token": 1, "output_token": 1},
    }


def provider(slug: str, base_url: str, **fields: Any) -> dict[str, Any]:
    return {"slug": slug, "name": slug, "base_url": base_url, **fields}


def check(tmp_path: Path, document: dict[str, Any], **env: str) -> Any:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(document))
    return tollway(
        "providers",
        "check",
        "--json",
        "--timeout",
        "5",
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        TOLLWAY_PROVIDERS=str(path),
        **env,
    )


def test_providers_check_against_real_servers(tmp_path: Path) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}/v1"
    with (
        running_mock(MockSettings(api_key="k-good")) as keyed,
        running_mock() as open_mock,
    ):
        document = {
            "providers": [
                provider("good", keyed, api_key_env="GOOD_KEY"),
                provider("badkey", keyed, api_key_env="BAD_KEY"),
                provider("keyless", keyed),
                provider("down", nothing_there),
                provider("partial", open_mock),
                provider("extra", open_mock, api_key_env="EXTRA_KEY", optional=True),
            ],
            "models": [
                {
                    "id": "m1",
                    "context_size": 1000,
                    "endpoints": [
                        endpoint(slug) for slug in ("good", "badkey", "keyless", "down", "extra")
                    ]
                    + [endpoint("partial", "demo-chat"), endpoint("good", "demo-small")][:1],
                },
                {
                    "id": "m2",
                    "context_size": 1000,
                    "endpoints": [
                        endpoint("partial", "not-served"),
                        endpoint("good", "demo-small"),
                    ],
                },
            ],
        }
        result = check(tmp_path, document, GOOD_KEY="k-good", BAD_KEY="k-wrong")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: 4 provider(s) failed the check: badkey, keyless, down, partial"
    ]
    assert "k-good" not in result.stdout + result.stderr
    assert "k-wrong" not in result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    rows = {row["provider"]: row for row in report["providers"]}
    assert list(rows) == ["good", "badkey", "keyless", "down", "partial", "extra"]
    statuses = {slug: (r["status"], r["reachable"], r["authorised"]) for slug, r in rows.items()}
    assert statuses == {
        "good": ("ok", True, True),
        "badkey": ("unauthorised", True, False),
        "keyless": ("unauthorised", True, False),
        "down": ("unreachable", False, None),
        "partial": ("models_missing", True, True),
        "extra": ("skipped", None, None),
    }
    assert rows["good"]["expected_models"] == ["demo-chat", "demo-small"]
    assert rows["partial"]["missing_models"] == ["not-served"]
    assert "no api_key_env" in rows["keyless"]["detail"]
    assert "EXTRA_KEY" in rows["extra"]["detail"]
    port = nothing_there.split(":")[2].split("/", maxsplit=1)[0]
    # Our words, one short line: no aiohttp internals ("ssl:default", "Connect call failed").
    assert rows["down"]["detail"] == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert rows["good"]["detail"] == "2 upstream models listed"


def test_providers_check_passes_on_a_healthy_registry_with_a_table(tmp_path: Path) -> None:
    with running_mock(MockSettings(api_key="k-1")) as keyed:
        document = {
            "providers": [
                provider("only", keyed, api_key_env="ONLY_KEY"),
                provider("extra", keyed, api_key_env="EXTRA_KEY", optional=True),
            ],
            "models": [{"id": "m", "context_size": 10, "endpoints": [endpoint("only")]}],
        }
        path = tmp_path / "providers.yaml"
        path.write_text(yaml.safe_dump(document))
        result = tollway(
            "providers",
            "check",
            database_url="sqlite:///unused.db",
            TOLLWAY_PROVIDERS=str(path),
            ONLY_KEY="k-1",
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["provider", "status", "base", "URL", "detail"]
    assert lines[2].split()[:3] == ["only", "ok", keyed]
    assert lines[3].split()[:2] == ["extra", "skipped"]


def test_the_demo_registry_checks_out_against_the_mock(tmp_path: Path) -> None:
    with running_mock() as url:
        result = tollway(
            "providers", "check", "--json", database_url="sqlite:///unused.db", TOLLWAY_MOCK_URL=url
        )
    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert {row["status"] for row in report["providers"]} == {"ok"}


def test_providers_check_honours_the_demos_mock_port(tmp_path: Path) -> None:
    """`python3 dev.py run --mock-port N`, then `tollway providers check --mock-port N`:
    the demo registry is checked where the demo's mock listens; one line per provider."""
    elsewhere = f"http://127.0.0.1:{free_port()}/v1"  # a stale TOLLWAY_MOCK_URL loses
    with running_mock() as url:
        mock_port = url.split(":")[2].split("/")[0]
        result = tollway(
            "providers",
            "check",
            "--mock-port",
            mock_port,
            database_url="sqlite:///unused.db",
            TOLLWAY_MOCK_URL=elsewhere,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["provider", "status", "base", "URL", "detail"]
        rows = [line.split(None, 3) for line in lines[2:]]
        assert [row[:3] for row in rows] == [
            ["demo-eu", "ok", url],
            ["demo-cheap", "ok", url],
            ["demo-fast", "ok", url],
        ]
        assert rows[2][3].strip() == "1 upstream model listed"  # demo-fast: demo-chat-fp8
    # Nothing listens there: every provider one clean line, exit status 1.
    down = tollway(
        "providers", "check", "--mock-port", str(free_port()), database_url="sqlite:///unused.db"
    )
    assert down.returncode == 1
    lines = down.stdout.splitlines()[2:]
    assert len(lines) == 3
    for line in lines:
        assert "unreachable" in line and "connection refused" in line
        assert "ssl:default" not in line and "Connect call" not in line
    assert down.stderr.strip().splitlines() == [
        "error: 3 provider(s) failed the check: demo-eu, demo-cheap, demo-fast"
    ]


def test_a_broken_registry_is_one_line_per_problem(tmp_path: Path) -> None:
    document = {
        "providers": [provider("a", "ftp://x"), provider("b", "http://b", api_key_env="B_KEY")],
        "models": [{"id": "m", "context_size": 10, "endpoints": [endpoint("a")]}],
    }
    result = check(tmp_path, document)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "providers[0] (slug=a).base_url" in lines[0]
    document["providers"][0]["base_url"] = "http://a"
    document["models"][0]["endpoints"][0]["provider"] = "zz"
    lines = check(tmp_path, document).stderr.strip().splitlines()
    assert len(lines) == 2
    assert "api_key_env: environment variable B_KEY is not set" in lines[0]
    assert "unknown provider 'zz'" in lines[1]
    assert all(line.startswith("error: ") for line in lines)
