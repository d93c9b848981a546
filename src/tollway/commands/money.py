"""`tollway credits | ledger`: top-ups, adjustments and the ledger check."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.billing.credits import credits_to_eur, credits_to_json_number
from tollway.billing.verify import LedgerReport, verify_ledger
from tollway.clock import system_clock
from tollway.commands.common import fail, group, print_json, run

credits_app = group("Top up and adjust balances.")
ledger_app = group("Check the money ledger.")

AMOUNT_HELP = "plain decimal EUR, at most 6 decimals (no exponent, no separators)"


@credits_app.command("add")
def credits_add(
    ctx: typer.Context,
    amount_eur: Annotated[str, typer.Argument(metavar="AMOUNT_EUR", help=AMOUNT_HELP)],
    user: Annotated[str, typer.Option(metavar="NAME", help="User name.")],
) -> None:
    """Top up a user's balance by AMOUNT_EUR (one ledger row)."""
    balance = run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).add_credits(
            actor=CLI, user=user, amount_eur=amount_eur
        ),
    )
    Console().print(f"balance of {user}: {credits_to_eur(balance)} EUR", highlight=False)


@credits_app.command("adjust")
def credits_adjust(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(metavar="NAME", help="User name.")],
    amount: Annotated[
        str,
        typer.Option(
            metavar="EUR",
            help=f"Positive refunds, negative debits; {AMOUNT_HELP}.",
        ),
    ],
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why, recorded in the ledger (≤ 200 chars).")
    ],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Refund or debit a balance with a reason (one `adjustment` ledger row). A debit never
    takes the balance below zero: it may take at most the spendable balance."""
    balance = run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).adjust_credits(
            actor=CLI, user=user, amount_eur=amount, reason=reason
        ),
    )
    if json:
        print_json(
            {
                "user": user,
                "balance": credits_to_json_number(balance),
                "balance_credits": balance,
                "currency": "EUR",
            }
        )
        return
    Console().print(f"adjusted; balance of {user}: {credits_to_eur(balance)} EUR", highlight=False)


@ledger_app.command("verify")
def ledger_verify(ctx: typer.Context) -> None:
    """Check balance = sum of ledger for every user, that no reservation is left open by a dead
    process or held longer than TOLLWAY_RESERVATION_MAX_AGE_S; exit status 1 on any problem."""
    report: LedgerReport = run(
        ctx,
        lambda settings, db: verify_ledger(
            db,
            system_clock,
            stale_s=settings.reservation_stale_s,
            max_age_s=settings.reservation_max_age_s,
        ),
    )
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"checked {report.users} users, {report.ledger_rows} ledger rows, "
        f"{report.open_reservations} open reservations"
    )
    if report.ok:
        console.print("ledger OK: every balance equals the sum of its ledger rows")
        return
    for problem in report.problems:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"problem: {problem}", markup=False
        )
    fail(f"ledger verification failed: {len(report.problems)} problem(s)")
