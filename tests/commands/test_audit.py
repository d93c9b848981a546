"""Every CLI command that changes state leaves its audit row (actor `cli`), on both
backends; `tollway audit list` reads them back."""

from __future__ import annotations

from typing import Any

import orjson

from tests.commands.conftest import Cli, ok_json, one_line_error


def entries(cli: Cli, *args: str) -> list[dict[str, Any]]:
    page = ok_json(cli("audit", "list", "--json", *args))
    assert isinstance(page, dict)
    return list(page["entries"])


def test_every_state_changing_command_has_its_audit_row(cli: Cli) -> None:
    # `init` (the fixture) bootstrapped admin/default with a management key.
    (boot,) = entries(cli, "--action", "bootstrap")
    assert boot["actor"] == {"kind": "cli", "name": "cli", "user_id": None}
    assert boot["after"]["management_key"] == "default"

    steps: list[tuple[tuple[str, ...], str, str]] = [
        (("users", "add", "bob"), "user.create", "user/bob"),
        (("projects", "add", "research"), "project.create", "project/research"),
        (
            ("members", "add", "--project", "research", "--user", "bob", "--role", "admin"),
            "membership.set",
            "membership/research/bob",
        ),
        (
            ("keys", "create", "--user", "bob", "--project", "research", "--name", "ops"),
            "api_key.create",
            "api_key/ops",
        ),
        (("credits", "add", "--user", "bob", "12.5"), "credits.add", "user/bob"),
        (
            ("credits", "adjust", "--user", "bob", "--amount", "-2.5", "--reason", "typo"),
            "credits.adjust",
            "user/bob",
        ),
        (
            ("rate-limits", "add", "research", "--scope", "project", "--rpm", "60", "--json"),
            "rate_limit.create",
            "rate_limit/",
        ),
        (("keys", "revoke", "--user", "bob", "ops"), "api_key.delete", "api_key/ops"),
    ]
    secrets: list[str] = []
    for args, action, target in steps:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        if args[:2] == ("keys", "create"):
            secrets.append(result.stdout.strip())
        (row,) = entries(cli, "--action", action)
        assert row["actor"]["kind"] == "cli", action
        assert row["target"].startswith(target), (action, row["target"])
        assert row["request_id"] is None
    limit_id = entries(cli, "--action", "rate_limit.create")[0]["after"]["id"]
    assert cli("rate-limits", "delete", "research", limit_id).exit_code == 0
    (deleted,) = entries(cli, "--action", "rate_limit.delete")
    assert deleted["before"]["requests_per_minute"] == 60
    assert deleted["after"] is None

    adjust = entries(cli, "--action", "credits.adjust")[0]
    assert adjust["before"] == {"balance_eur": "12.5"}
    assert adjust["after"]["balance_eur"] == "10"
    assert adjust["after"]["reason"] == "typo"
    role = entries(cli, "--action", "membership.set")[0]
    assert role["before"] is None and role["after"]["role"] == "admin"

    everything = entries(cli, "--limit", "200")
    assert len(everything) == 1 + len(steps) + 1
    text = orjson.dumps(everything).decode()
    assert secrets and all(s not in text for s in secrets)  # never a key
    # Newest first; the project filter narrows to rows of that project.
    assert everything[0]["action"] == "rate_limit.delete"
    research = entries(cli, "--project", "research")
    assert {e["action"] for e in research} == {
        "project.create",
        "membership.set",
        "api_key.create",
        "api_key.delete",
        "rate_limit.create",
        "rate_limit.delete",
    }


def test_audit_list_pages_and_refuses_bad_filters(cli: Cli) -> None:
    for name in ("u1", "u2", "u3"):
        assert cli("users", "add", name).exit_code == 0
    first = ok_json(cli("audit", "list", "--json", "--limit", "2"))
    assert isinstance(first, dict)
    assert [e["target"] for e in first["entries"]] == ["user/u3", "user/u2"]
    second = ok_json(
        cli("audit", "list", "--json", "--limit", "2", "--cursor", first["next_cursor"])
    )
    assert isinstance(second, dict)
    assert [e["target"] for e in second["entries"]] == ["user/u1", "project/default"]
    assert second["next_cursor"] is None
    assert "limit" in one_line_error(cli("audit", "list", "--limit", "0"))
    assert "cursor" in one_line_error(cli("audit", "list", "--cursor", "garbage"))
    assert "since" in one_line_error(cli("audit", "list", "--since", "yesterday"))
    table = cli("audit", "list")
    assert table.exit_code == 0 and "user.create" in table.stdout and "cli:cli" in table.stdout
