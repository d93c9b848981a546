"""The statements of credit leases (billing/leases.py): draw, group-commit, return.

A lease is a row of `reservations` whose request id starts with ``lease-`` (no project, no
key, no budget window), owned by one gateway process. Its ledger rows carry the lease id as
their request id: ``lease`` rows (negative, a draw) and ``release`` rows (positive: what the
group commit moved from the lease to the requests it charged, or what went back to the
balance). So for every lease, open or closed, ``amount_credits`` of its row (0 once gone)
equals minus the sum of its ledger rows; `ledger verify` checks it.

Every function runs inside the caller's transaction, on a sync `Connection`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from tollway.store._sql import Locking, insert_rows
from tollway.store.reservations import USAGE_COLUMNS
from tollway.store.schema import api_keys

_LOCK_BALANCE = Locking.of(
    "SELECT balance_credits FROM users WHERE id = :user_id", "FOR UPDATE OF users"
)
_DEBIT = text(
    "UPDATE users SET balance_credits = balance_credits - :amount"
    " WHERE id = :user_id AND balance_credits >= :amount"
)
_CREDIT = text("UPDATE users SET balance_credits = balance_credits + :amount WHERE id = :user_id")
_GROW = text(
    "UPDATE reservations SET amount_credits = amount_credits + :amount WHERE request_id = :lease_id"
)
_SHRINK = text(
    "UPDATE reservations SET amount_credits = amount_credits - :amount"
    " WHERE request_id = :lease_id AND amount_credits >= :amount"
)
_OPEN = text(
    "INSERT INTO reservations (request_id, user_id, project_id, key_id, amount_credits,"
    " budget_windows, instance_id, created_at) VALUES (:lease_id, :user_id, '', NULL,"
    " :amount, '[]', :instance_id, :now)"
)
_CLAIM = text("DELETE FROM reservations WHERE request_id = :lease_id RETURNING amount_credits")
_LEDGER = text(
    "INSERT INTO ledger (entry_id, user_id, kind, amount_credits, request_id, created_at)"
    " VALUES (:entry_id, :user_id, :kind, :amount, :request_id, :now)"
)
_ENTRY_EXISTS = text("SELECT 1 FROM ledger WHERE entry_id = :entry_id")
# Built once: constructing the select per group commit cost more than running it.
_ALIVE_KEYS = select(api_keys.c.id).where(api_keys.c.id.in_(bindparam("ids", expanding=True)))


def draw(
    conn: Connection,
    *,
    lease_id: str,
    entry_id: str,
    user_id: str,
    want: int,
    need: int,
    share: int,
    instance_id: str,
    now: int,
) -> tuple[int, bool]:
    """Move up to `want` credits, and at most 1/`share` of the balance, from the balance into
    the lease (opened if it is not there). Returns (credits drawn, whether the lease row was
    there before); (0, …) when that would be less than `need`: nothing is written then."""
    row = conn.execute(_LOCK_BALANCE.on(conn), {"user_id": user_id}).first()  # user, then lease
    if row is None:
        return 0, False
    take = min(want, int(row[0]) // share)
    if take < need or take <= 0:
        return 0, False
    if conn.execute(_DEBIT, {"user_id": user_id, "amount": take}).rowcount != 1:
        return 0, False
    _ledger(conn, entry_id, user_id, "lease", -take, lease_id, now)
    existed = conn.execute(_GROW, {"lease_id": lease_id, "amount": take}).rowcount == 1
    if not existed:
        conn.execute(
            _OPEN,
            {
                "lease_id": lease_id,
                "user_id": user_id,
                "amount": take,
                "instance_id": instance_id,
                "now": now,
            },
        )
    return take, existed


def commit_charges(
    conn: Connection,
    *,
    lease_id: str,
    entry_id: str,
    user_id: str,
    total: int,
    charges: Sequence[dict[str, Any]],
    usage: Sequence[dict[str, Any]],
    now: int,
) -> bool:
    """Move `total` from the lease to the requests it served: one ``release`` row for the
    lease, one ``charge`` row per charged request (`charges`: entry_id, request_id, amount),
    and their usage events. The balance does not move (the lease had taken it already).
    False, writing nothing, when the lease row is gone or holds less (released by a sweeper
    that took this process for dead); True also when `entry_id` landed already (a retry of a
    commit whose answer was lost)."""
    if conn.execute(_ENTRY_EXISTS, {"entry_id": entry_id}).first() is not None:
        return True
    # The user's row first, as every lease statement does: the ledger rows' foreign key
    # takes a share lock on it, which — taken after the lease row — closed a cycle with a
    # draw (user row, then lease row): a deadlock, one of them rolled back, under load.
    _lock_user(conn, user_id)
    if total and conn.execute(_SHRINK, {"lease_id": lease_id, "amount": total}).rowcount != 1:
        return False
    if total:
        _ledger(conn, entry_id, user_id, "release", total, lease_id, now)
    insert_rows(
        conn,
        "ledger",
        _LEDGER_COLUMNS,
        [(c["entry_id"], user_id, "charge", -c["amount"], c["request_id"], now) for c in charges],
    )
    insert_rows(conn, "usage_events", USAGE_COLUMNS, [_usage_values(u) for u in usage])
    return True


def shrink(
    conn: Connection, *, lease_id: str, entry_id: str, user_id: str, amount: int, now: int
) -> bool:
    """Give `amount` of what the lease holds back to the balance, the lease staying open.
    False, writing nothing, when the lease row is gone or holds less."""
    _lock_user(conn, user_id)
    if conn.execute(_SHRINK, {"lease_id": lease_id, "amount": amount}).rowcount != 1:
        return False
    conn.execute(_CREDIT, {"user_id": user_id, "amount": amount})
    _ledger(conn, entry_id, user_id, "release", amount, lease_id, now)
    return True


def gone_keys(conn: Connection, key_ids: set[int]) -> set[int]:
    """Which of `key_ids` no longer exist (deleted, maybe through another replica)."""
    if not key_ids:
        return set()
    alive = conn.execute(_ALIVE_KEYS, {"ids": sorted(key_ids)})
    return key_ids - {int(row[0]) for row in alive}


def give_back(conn: Connection, *, lease_id: str, entry_id: str, user_id: str, now: int) -> int:
    """Close the lease: what it still holds goes back to the balance. Returns that amount
    (0 when the row was gone already)."""
    _lock_user(conn, user_id)
    amount = conn.execute(_CLAIM, {"lease_id": lease_id}).scalar_one_or_none()
    if amount is None:
        return 0
    if amount:
        conn.execute(_CREDIT, {"user_id": user_id, "amount": int(amount)})
        _ledger(conn, entry_id, user_id, "release", int(amount), lease_id, now)
    return int(amount)


_LEDGER_COLUMNS = ("entry_id", "user_id", "kind", "amount_credits", "request_id", "created_at")


def _usage_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in USAGE_COLUMNS)


def _lock_user(conn: Connection, user_id: str) -> None:
    """Every statement that moves credits between a balance and a lease locks the user's row
    first, then the lease's: one order for all (a draw's), so two of them cannot deadlock."""
    conn.execute(_LOCK_BALANCE.on(conn), {"user_id": user_id})


def _ledger(
    conn: Connection,
    entry_id: str,
    user_id: str,
    kind: str,
    amount: int,
    request_id: str,
    now: int,
) -> None:
    conn.execute(
        _LEDGER,
        {
            "entry_id": entry_id,
            "user_id": user_id,
            "kind": kind,
            "amount": amount,
            "request_id": request_id,
            "now": now,
        },
    )
