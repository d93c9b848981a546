"""`tollway ledger verify`: the money invariants, checkable at any time (docs/billing.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tollway.clock import Clock
from tollway.store import ledger
from tollway.store import reservations as store
from tollway.store.database import Database


@dataclass(slots=True)
class LedgerReport:
    users: int = 0
    ledger_rows: int = 0
    open_reservations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_ledger(
    db: Database, clock: Clock, *, stale_s: float, max_age_s: float
) -> LedgerReport:
    """Balance = Σ ledger for every user; no negative balance; every open reservation matches
    an unreleased `reserve:` ledger row; no reservation held by a dead process; none older
    than `max_age_s` (longer than any request may hold credits: its settlement was lost)."""
    report = LedgerReport()
    async with db.read() as conn:
        report.users, report.ledger_rows, report.open_reservations = await store.counts(conn)
        for user_id, name, balance, total in await ledger.ledger_mismatches(conn):
            report.problems.append(
                f"user {name} ({user_id}): balance {balance} credits != ledger sum {total}"
            )
        for user_id, name, balance in await store.negative_balances(conn):
            report.problems.append(f"user {name} ({user_id}): negative balance {balance} credits")
        for user_id, held, pending in await store.open_reservation_totals(conn):
            report.problems.append(
                f"user {user_id}: open reservations hold {held} credits but unreleased "
                f"reserve ledger rows total {pending}"
            )
        stale = await store.abandoned_reservations(
            conn, stale_before=int(clock() - stale_s), limit=1000
        )
        if stale:
            report.problems.append(
                f"{len(stale)} reservation(s) held by dead gateway processes, not yet released "
                "(a running gateway releases them within its heartbeat interval)"
            )
        old, credits = await store.held_since(conn, created_before=int(clock() - max_age_s))
        if old:
            report.problems.append(
                f"{old} reservation(s) holding {credits} credits are older than "
                f"{max_age_s:g} s (TOLLWAY_RESERVATION_MAX_AGE_S): their settlement was lost"
            )
    return report
