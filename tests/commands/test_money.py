from __future__ import annotations

import asyncio

from sqlalchemy import select

from tests.commands.conftest import Cli, ok_json, one_line_error
from tests.support.processes import tollway
from tollway.store.database import Database
from tollway.store.schema import ledger


def balance(cli: Cli, user: str = "admin") -> int:
    users = ok_json(cli("users", "list", "--json"))
    assert isinstance(users, dict)
    return int(next(u["balance_credits"] for u in users["users"] if u["name"] == user))


def ledger_rows(database_url: str) -> list[tuple[str, int, str | None]]:
    async def read() -> list[tuple[str, int, str | None]]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.read() as conn:
                query = select(ledger.c.kind, ledger.c.amount_credits, ledger.c.note)
                rows = (await conn.execute(query.order_by(ledger.c.id))).all()
        finally:
            await db.dispose()
        return [(r[0], int(r[1]), r[2]) for r in rows]

    return asyncio.run(read())


def test_adjust_refunds_and_debits_with_the_reason_in_the_ledger(
    cli: Cli, database_url: str
) -> None:
    assert cli("credits", "add", "--user", "admin", "10").exit_code == 0
    refund = cli(
        "credits", "adjust", "--user", "admin", "--amount", "2.5", "--reason", "outage refund"
    )
    assert refund.exit_code == 0, refund.stderr
    assert "12.500000 EUR" in refund.stdout
    debit = ok_json(
        cli(
            "credits",
            "adjust",
            "--user",
            "admin",
            "--amount",
            "-2.50",
            "--reason",
            "  duplicate\n top-up ",
            "--json",
        )
    )
    assert debit == {
        "user": "admin",
        "balance": 10.0,
        "balance_credits": 10_000_000,
        "currency": "EUR",
    }
    assert ledger_rows(database_url) == [
        ("topup", 10_000_000, None),
        ("adjustment", 2_500_000, "outage refund"),
        ("adjustment", -2_500_000, "duplicate top-up"),
    ]
    verified = cli("ledger", "verify")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "ledger OK" in verified.stdout


def test_a_debit_never_takes_the_balance_below_zero(cli: Cli) -> None:
    assert cli("credits", "add", "--user", "admin", "1.000001").exit_code == 0
    refused = one_line_error(
        cli("credits", "adjust", "--user", "admin", "--amount", "-1.000002", "--reason", "x")
    )
    assert "below zero" in refused and "1.000001 EUR" in refused
    assert balance(cli) == 1_000_001
    to_zero = cli("credits", "adjust", "--user", "admin", "--amount", "-1.000001", "--reason", "x")
    assert to_zero.exit_code == 0, to_zero.stderr
    assert balance(cli) == 0
    assert "below zero" in one_line_error(
        cli("credits", "adjust", "--user", "admin", "--amount", "-0.000001", "--reason", "x")
    )
    assert cli("ledger", "verify").exit_code == 0


# Values starting with "-" are parsed as options by click: see the process test below.
BAD_POSITIVE = ("1e3", "nan", "inf", "1,000", "1.0000001", ".5", "", "abc", "0", "+1", "1000000000")
BAD_SIGNED = ("1e3", "nan", "-inf", "1,5", "0", "-0.0000001", "--1")


def test_credits_add_accepts_only_plain_positive_decimals(cli: Cli) -> None:
    for amount in BAD_POSITIVE:
        assert "amount must be" in one_line_error(cli("credits", "add", "--user", "admin", amount))
    assert balance(cli) == 0


def test_credits_adjust_accepts_only_plain_nonzero_decimals(cli: Cli) -> None:
    assert cli("credits", "add", "--user", "admin", "5").exit_code == 0
    for amount in BAD_SIGNED:
        refused = cli("credits", "adjust", "--user", "admin", "--amount", amount, "--reason", "r")
        assert "amount must be" in one_line_error(refused)
    assert balance(cli) == 5_000_000


def test_adjust_needs_a_reason_and_a_known_user(cli: Cli) -> None:
    assert "reason" in one_line_error(
        cli("credits", "adjust", "--user", "admin", "--amount", "1", "--reason", "  \n ")
    )
    assert "at most 200" in one_line_error(
        cli("credits", "adjust", "--user", "admin", "--amount", "1", "--reason", "r" * 201)
    )
    assert "unknown user 'ghost'" in one_line_error(
        cli("credits", "adjust", "--user", "ghost", "--amount", "1", "--reason", "r")
    )
    assert balance(cli) == 0


def test_strict_amount_errors_are_one_line_from_the_real_command(database_url: str) -> None:
    assert tollway("init", database_url=database_url).returncode == 0
    for args in (
        ("credits", "add", "--user", "admin", "1e3"),
        ("credits", "add", "--user", "admin", "-1"),
        ("credits", "add", "--user", "admin", "-inf"),
        ("credits", "adjust", "--user", "admin", "--amount", "nan", "--reason", "r"),
    ):
        result = tollway(*args, database_url=database_url)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert result.returncode in (1, 2)
    listed = tollway("users", "list", "--json", database_url=database_url)
    assert '"balance_credits":0' in listed.stdout
