"""How a reservation held in the database closes: the balance, ledger and budget windows
given back or charged, and the usage event written — the statements the meter's settle and
the recovery's release share (`billing/meter.py`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from tollway.store import budgets as budget_store
from tollway.store import reservations as store
from tollway.store.budgets import WindowKey
from tollway.store.reservations import OpenReservation, is_lease

if TYPE_CHECKING:
    from tollway.billing.records import Payer, UsageRecord

log = logging.getLogger("tollway.billing")


def cost_of(usage: UsageRecord | None) -> int:
    if usage is None:
        return 0
    return usage.cost


def release_unsettled(request_id: str, now: int, conn: Connection) -> bool:
    # The user's row first, then the reservation's: the order of a lease's draw, commit and
    # give-back, so releasing a lease can never close a lock cycle with them.
    user_id = store.reservation_user(conn, request_id)
    if user_id is None:
        return False
    store.locked_balance(conn, user_id)
    held = store.claim_reservation(conn, request_id)
    if held is None:
        return False
    close(conn, held, 0, now)
    if not is_lease(request_id):  # a lease served no request of its own
        record_usage(conn, held, now, 0, ABORTED)
    return True


def described(usage: UsageRecord, payer: Payer) -> dict[str, Any]:
    """The `usage_events` columns that say what was served, through which key: all but who
    paid (user, project, key id) and the cost, which come from the claimed reservation."""
    return {
        "key_name": payer.key_name,
        "endpoint": usage.endpoint,
        "model": usage.model,
        "provider": usage.provider,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "latency_ms": usage.latency_ms,
        "status": usage.status,
        "usage_source": usage.usage_source,
    }


# What a reservation released without serving records (nothing served, no key named).
ABORTED: dict[str, Any] = {
    "key_name": "",
    "endpoint": "",
    "model": "",
    "provider": "",
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 0,
    "cached_prompt_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "latency_ms": 0,
    "status": "aborted",
    "usage_source": "none",
}


def record_usage(
    conn: Connection, held: OpenReservation, now: int, charge: int, described: dict[str, Any]
) -> None:
    store.record_usage(
        conn,
        {
            "request_id": held.request_id,
            "created_at": now,
            "user_id": held.user_id,
            "project_id": held.project_id,
            "key_id": held.key_id,
            "cost_credits": charge,
            **described,
        },
    )


def charge_overrun(
    conn: Connection,
    *,
    user_id: str,
    request_id: str,
    extra: int,
    windows: tuple[WindowKey, ...],
    now: int,
    reason: str = "",
) -> int:
    """Usage the upstream reported beyond what was reserved (`extra` credits): taken from
    the balance as far as it goes — an `overrun:` ledger row of kind `charge` (counted in the
    budget windows' spending too) — and what the balance cannot cover recorded as a
    `shortfall:` row of 0 credits whose note says how much was not charged. The balance
    never goes below zero. Returns what was taken; idempotent (a retry takes nothing more)."""
    done = store.entry_amount(conn, store.entry_id("overrun", request_id))
    if done is not None:
        return -done
    if store.entry_amount(conn, store.entry_id("shortfall", request_id)) is not None:
        return 0
    take = min(extra, max(store.locked_balance(conn, user_id), 0))
    if take and store.debit(conn, user_id=user_id, amount=take):
        store.append_noted(
            conn,
            entry=store.entry_id("overrun", request_id),
            user_id=user_id,
            kind="charge",
            amount=-take,
            request_id=request_id,
            note=f"{take} credits charged from the balance: {reason or OVERRUN}",
            now=now,
        )
        if windows:
            budget_store.move_windows(conn, windows, reserved_delta=0, spent_delta=take)
    else:
        take = 0
    short = extra - take
    record_shortfall(conn, user_id=user_id, request_id=request_id, short=short, now=now, why=reason)
    return take


OVERRUN = "upstream usage beyond the reservation"
# A credit lease released by a sweeper while its process was only paused (taken for dead):
# the requests it served afterwards are charged from the balance instead.
LEASE_LOST = "its credit lease was released while this process was taken for dead"


def charge_without_lease(
    conn: Connection,
    *,
    user_id: str,
    request_id: str,
    cost: int,
    usage: dict[str, Any] | None,
    now: int,
) -> int:
    """A leased request whose lease is gone (`LEASE_LOST`): its cost charged from the
    balance as far as it goes, the rest a shortfall row, and its usage event (the
    `usage_events` row, `cost_credits` set to what was charged) written unless there
    already. Returns the charge; idempotent."""
    charged = 0
    if cost > 0:
        charged = charge_overrun(
            conn,
            user_id=user_id,
            request_id=request_id,
            extra=cost,
            windows=(),
            now=now,
            reason=LEASE_LOST,
        )
    if usage is not None:
        store.record_usage_once(conn, {**usage, "cost_credits": charged})
    return charged


def record_shortfall(
    conn: Connection, *, user_id: str, request_id: str, short: int, now: int, why: str = ""
) -> None:
    """A `shortfall:` ledger row of 0 credits (balance = Σ ledger holds) whose note says
    how many credits of served usage were not charged, and why."""
    if short <= 0:
        return
    reason = why or "the balance could not cover the upstream's reported usage"
    if why:
        reason += " and the balance could not cover it"
    store.append_noted(
        conn,
        entry=store.entry_id("shortfall", request_id),
        user_id=user_id,
        kind="shortfall",
        amount=0,
        request_id=request_id,
        note=f"{short} credits not charged: {reason}",
        now=now,
    )
    log.warning("request %s: %d credits not charged (%s)", request_id, short, reason)


def close(conn: Connection, held: OpenReservation, charge: int, now: int) -> None:
    """Give the reservation back, take the charge; balance, ledger and budget windows."""
    store.credit(conn, user_id=held.user_id, amount=held.amount_credits - charge)
    entries = [("release", held.amount_credits)]
    if charge:
        entries.append(("charge", -charge))
    store.append_ledger(conn, held.user_id, held.request_id, now, entries)
    if held.windows:
        budget_store.move_windows(
            conn, held.windows, reserved_delta=-held.amount_credits, spent_delta=charge
        )
