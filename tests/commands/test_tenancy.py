from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.commands.conftest import Cli, ok_json, one_line_error
from tests.support.processes import serve_process
from tollway.cli import app
from tollway.keys.secrets import KEY_PREFIX


def populate(cli: Cli) -> None:
    for args in (
        ("users", "add", "bob"),
        ("users", "add", "carol"),
        ("projects", "add", "research"),
        ("members", "add", "--project", "research", "--user", "bob", "--role", "admin"),
        ("members", "add", "--project", "research", "--user", "carol", "--role", "member"),
        ("members", "add", "--project", "default", "--user", "bob", "--role", "member"),
        ("keys", "create", "--user", "bob", "--project", "research", "--name", "bob-r"),
        ("keys", "create", "--user", "bob", "--project", "default", "--name", "bob-d"),
        ("credits", "add", "--user", "bob", "12.345678"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)


def test_users_list(cli: Cli) -> None:
    populate(cli)
    users = ok_json(cli("users", "list", "--json"))
    assert isinstance(users, dict)
    rows = {row["name"]: row for row in users["users"]}
    assert list(rows) == ["admin", "bob", "carol"]
    assert rows["bob"]["balance"] == 12.345678
    assert rows["bob"]["balance_credits"] == 12_345_678
    assert (rows["bob"]["projects"], rows["bob"]["keys"]) == (2, 2)
    assert (rows["carol"]["projects"], rows["carol"]["keys"], rows["carol"]["balance"]) == (1, 0, 0)
    table = cli("users", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "id", "balance", "EUR", "projects", "keys", "created"]
    bob = next(line for line in lines if line.startswith("bob "))
    assert "12.345678" in bob and rows["bob"]["id"] in bob


def test_projects_list(cli: Cli) -> None:
    populate(cli)
    projects = ok_json(cli("projects", "list", "--json"))
    assert isinstance(projects, dict)
    assert [(p["name"], p["members"], p["keys"]) for p in projects["projects"]] == [
        ("default", 2, 2),  # admin and bob; admin's first key and bob-d
        ("research", 2, 1),
    ]
    table = cli("projects", "list").stdout
    assert "research" in table and "members" in table.splitlines()[0]


def test_members_list(cli: Cli) -> None:
    populate(cli)
    everyone = ok_json(cli("members", "list", "--json"))
    assert everyone == {
        "members": [
            {"project": "default", "user": "admin", "role": "admin"},
            {"project": "default", "user": "bob", "role": "member"},
            {"project": "research", "user": "bob", "role": "admin"},
            {"project": "research", "user": "carol", "role": "member"},
        ]
    }
    research = ok_json(cli("members", "list", "--project", "research", "--json"))
    assert isinstance(research, dict) and len(research["members"]) == 2
    bob = ok_json(cli("members", "list", "--user", "bob", "--json"))
    assert isinstance(bob, dict) and [m["project"] for m in bob["members"]] == [
        "default",
        "research",
    ]
    table = cli("members", "list", "--project", "research").stdout.splitlines()
    assert table[0].split() == ["project", "user", "role"]
    assert any(line.split() == ["research", "carol", "member"] for line in table)
    assert "unknown project 'nope'" in one_line_error(cli("members", "list", "--project", "nope"))


def test_keys_list_never_shows_a_secret(cli: Cli) -> None:
    populate(cli)
    result = cli("keys", "list", "--json")
    assert KEY_PREFIX not in result.stdout
    keys = ok_json(result)
    assert isinstance(keys, dict)
    assert [(k["user"], k["project"], k["name"]) for k in keys["api_keys"]] == [
        ("admin", "default", "default"),
        ("bob", "research", "bob-r"),
        ("bob", "default", "bob-d"),
    ]
    assert set(keys["api_keys"][0]) == {
        "user",
        "project",
        "name",
        "is_management_key",
        "created_at",
    }
    assert keys["api_keys"][0]["is_management_key"] is True
    assert keys["api_keys"][1]["is_management_key"] is False
    narrowed = ok_json(cli("keys", "list", "--user", "bob", "--project", "default", "--json"))
    assert narrowed == {"api_keys": [{**keys["api_keys"][2]}]}
    table = cli("keys", "list", "--user", "bob")
    assert KEY_PREFIX not in table.stdout
    assert [line.split()[:4] for line in table.stdout.splitlines()[2:]] == [
        ["bob", "research", "bob-r", "inference"],
        ["bob", "default", "bob-d", "inference"],
    ]
    empty = cli("keys", "list", "--user", "carol")
    assert empty.exit_code == 0 and empty.stdout == "" and "no API keys" in empty.stderr
    assert ok_json(cli("keys", "list", "--user", "carol", "--json")) == {"api_keys": []}


def test_keys_revoke_stops_the_key_on_a_running_gateway(cli: Cli, database_url: str) -> None:
    populate(cli)
    created = cli(
        "keys", "create", "--user", "bob", "--project", "research", "--name", "ops", "--management"
    )
    assert created.exit_code == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    with serve_process(database_url) as (root, _):
        assert httpx.get(f"{root}/v1/user/balance", headers=headers).status_code == 200
        revoked = cli("keys", "revoke", "--user", "bob", "ops")
        assert revoked.exit_code == 0, revoked.stderr
        assert "ops" in revoked.stdout
        # The key was cached by the gateway; the revocation holds at once all the same.
        assert httpx.get(f"{root}/v1/user/balance", headers=headers).status_code == 401
    names = ok_json(cli("keys", "list", "--user", "bob", "--json"))
    assert isinstance(names, dict) and [k["name"] for k in names["api_keys"]] == ["bob-r", "bob-d"]
    assert "API key 'ops' not found" in one_line_error(
        cli("keys", "revoke", "--user", "bob", "ops")
    )
    assert "unknown user 'ghost'" in one_line_error(cli("keys", "revoke", "--user", "ghost", "x"))


def test_empty_lists_say_so(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/empty.db"
    result = runner.invoke(app, ["--database-url", url, "users", "list"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "no users" in result.stderr
    assert ok_json(runner.invoke(app, ["--database-url", url, "users", "list", "--json"])) == {
        "users": []
    }


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("init",),
        ("serve",),
        ("demo",),
        ("mock-provider",),
        ("users", "list"),
        ("projects", "list"),
        ("members", "list"),
        ("keys", "list"),
        ("keys", "create"),
        ("keys", "revoke"),
        ("credits", "add"),
        ("credits", "adjust"),
        ("ledger", "verify"),
        ("providers", "check"),
    ],
)
def test_help_shows_flags_as_flags(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    if "--json" in result.stdout:
        assert any(line.split()[:2] == ["--json", "Print"] for line in result.stdout.splitlines())
