"""How a reservation held in the database closes: the balance, ledger and budget windows
given back or charged, and the usage event written — the statements the meter's settle and
the recovery's release share (`billing/meter.py`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from tollway.store import budgets as budget_store
from tollway.store import reservations as store
from tollway.store.reservations import OpenReservation, is_lease

if TYPE_CHECKING:
    from tollway.billing.records import Payer, UsageRecord

log = logging.getLogger("tollway.billing")


def cost_of(usage: UsageRecord | None) -> int:
    if usage is None:
        return 0
    return usage.cost


def release_unsettled(request_id: str, now: int, conn: Connection) -> bool:
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


def warn_if_capped(request_id: str, cost: int, *, reserved: int) -> None:
    if cost > reserved:
        log.warning(
            "request %s: upstream usage costs %d credits, more than the %d reserved;"
            " charging the reservation",
            request_id,
            cost,
            reserved,
        )


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
