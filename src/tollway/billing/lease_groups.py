"""A credit lease's state in this process, and the group commit's transaction: what
`billing/leases.py` moves between memory and the database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from tollway.billing.closing import charge_without_lease
from tollway.store import leases as store


@dataclass(slots=True)
class Lease:
    lease_id: str
    user_id: str
    held: int = 0  # what the lease row holds, as far as this process knows
    reserved: int = 0  # taken by requests in flight
    unflushed: int = 0  # charged, waiting for the group commit
    last_draw: int = 0
    largest_need: int = 0
    used_at: float = 0.0
    draws: int = 0
    drawn_at: float = 0.0
    spent: int = 0  # charged since the last draw
    drawing: asyncio.Task[bool] | None = None
    short: bool = False  # the last draw got less than it asked for (or failed)
    starved_until: float = 0.0

    @property
    def free(self) -> int:
        return self.held - self.reserved - self.unflushed


@dataclass(slots=True)
class Group:
    """Charges of one lease committed together; its entry id makes a retry idempotent."""

    lease: Lease
    entry_id: str
    total: int = 0
    charges: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0


def commit_groups(groups: list[Group], now: int, conn: Connection) -> tuple[list[Group], set[int]]:
    """One transaction for every group; returns those whose lease row was gone (their
    requests charged from the balance instead, `_charge_without_lease`), and the keys among
    those that were used which no longer exist."""
    lost = []
    for group in groups:
        if not store.commit_charges(
            conn,
            lease_id=group.lease.lease_id,
            entry_id=group.entry_id,
            user_id=group.lease.user_id,
            total=group.total,
            charges=group.charges,
            usage=group.usage,
            now=now,
        ):
            _charge_without_lease(conn, group, now)
            lost.append(group)
    used = {row["key_id"] for group in groups for row in group.usage if row["key_id"]}
    return lost, store.gone_keys(conn, used)


def _charge_without_lease(conn: Connection, group: Group, now: int) -> None:
    """The group's lease row was released by a sweeper (this process was paused past the
    stale time and taken for dead; the sweeper gave the whole lease back to the balance):
    each request is charged from the balance as far as it goes, the rest recorded as a
    shortfall row, with its usage event — never only a log line."""
    costs = {c["request_id"]: c["amount"] for c in group.charges}
    usage = {row["request_id"]: row for row in group.usage}
    for request_id in sorted(costs.keys() | usage.keys()):
        charge_without_lease(
            conn,
            user_id=group.lease.user_id,
            request_id=request_id,
            cost=costs.get(request_id, 0),
            usage=usage.get(request_id),
            now=now,
        )
