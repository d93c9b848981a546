"""Settlements the database refused, retried until they land (durable until done).

A settlement handed here is kept in memory and retried by one background task with
exponential backoff (`FIRST_RETRY_S` doubling up to `MAX_RETRY_S`) for as long as the
database is unavailable — so once it answers again, every pending settlement lands within
`MAX_RETRY_S` plus the time to write them. Retrying is safe: a settlement claims its
reservation by `DELETE … RETURNING` and its ledger entry ids are unique, so a retry of one
that did commit (the connection broke after the COMMIT) charges nothing twice.

An error that is not about availability (a bug: a constraint, a value the schema refuses) is
retried `MAX_FAILED_ATTEMPTS` times, then the reservation is released uncharged (without a
usage event, which may be what was refused) and the loss logged: a hold must never outlive
the bug that blocked its settlement.

The queue is bounded (`max_size`, setting `max_pending_settlements`): while it is full, the
meter refuses new reservations at once (503 `database_unavailable`, before touching the
database), so no new settlement can join it; what is in it is never dropped. It can exceed
the bound only by the settlements of requests already in flight when it filled.

On shutdown `close` keeps trying for a bounded time; what is still pending then stays in the
database as an open reservation of this instance, which a sweeper (another replica, or this
one's successor) releases in full once the instance's heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tollway.billing.records import Reservation, UsageRecord
from tollway.errors import DatabaseUnavailable
from tollway.tasks import TaskTracker

log = logging.getLogger("tollway.billing")

FIRST_RETRY_S = 0.1
MAX_RETRY_S = 2.0
MAX_FAILED_ATTEMPTS = 5
MAX_PENDING = 10_000


class Settles(Protocol):
    """What the retrier needs of the meter (`billing/meter.py`): its instance and one
    settlement attempt. A protocol, so this module does not import the meter."""

    instance_id: str

    async def settle(self, reservation: Reservation, usage: UsageRecord | None) -> int: ...


@dataclass(slots=True)
class _Pending:
    reservation: Reservation
    usage: UsageRecord | None
    since: float
    failures: int = 0


class PendingSettlements:
    """This process's settlements waiting for the database, and the task that retries them."""

    def __init__(self, meter: Settles, tasks: TaskTracker, max_size: int = MAX_PENDING) -> None:
        self._meter = meter
        self._tracker = tasks
        self.max_size = max_size
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Told what a deferred settlement finally charged (0 when released after repeated
        # failures): whoever counted the charge at deferral can count what it came to.
        self.on_landed: Callable[[UsageRecord | None, int], None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    @property
    def full(self) -> bool:
        """No new reservation may be made until some of these land (see the module)."""
        return len(self._pending) >= self.max_size

    def add(self, reservation: Reservation, usage: UsageRecord | None, reason: Exception) -> None:
        """Keep the settlement and make sure the retrier runs (callable where awaiting is
        not: a cancelled task, a `finally`)."""
        request_id = reservation.request_id
        if request_id not in self._pending:
            log.warning(
                "settlement of %s deferred (%s); retrying until the database takes it",
                request_id,
                _reason(reason),
            )
        self._pending[request_id] = _Pending(reservation, usage, time.monotonic())
        if self._task is None or self._task.done():
            self._task = self._tracker.spawn(
                self._run(), f"tollway-settlements-{self._meter.instance_id}", service=True
            )
        self._wake.set()

    async def close(self, timeout_s: float) -> list[str]:
        """Try to land every pending settlement for up to `timeout_s`, stop the retrier, and
        return the request ids still pending (their reservations stay open)."""
        if self._pending and timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    while self._pending:
                        self._wake.set()
                        await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = sorted(self._pending)
        if left:
            log.error(
                "%d settlement(s) could not be written before shutdown; their reservations "
                "stay open until a sweeper releases them (uncharged): %s",
                len(left),
                ", ".join(left[:20]),
            )
        return left

    async def _run(self) -> None:
        delay = FIRST_RETRY_S
        while self._pending:
            if not await self._attempt_all():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        self._wake.clear()
                        await self._wake.wait()
                delay = min(delay * 2, MAX_RETRY_S)
            else:
                delay = FIRST_RETRY_S

    async def _attempt_all(self) -> bool:
        """One pass over what is pending; False when something is left for the next pass."""
        done = True
        for request_id, item in list(self._pending.items()):
            try:
                charged = await self._meter.settle(item.reservation, item.usage)
            except DatabaseUnavailable:
                return False  # still down: the others would fail the same way
            except Exception as exc:  # a bug, not an outage: bounded retries, then release
                item.failures += 1
                log.error("settlement of %s failed: %s", request_id, _reason(exc))
                if item.failures < MAX_FAILED_ATTEMPTS or not await self._give_up(request_id, item):
                    done = False
                    continue
            else:
                waited = time.monotonic() - item.since
                log.info("deferred settlement of %s landed after %.1f s", request_id, waited)
                self._landed(item.usage, charged)
            self._pending.pop(request_id, None)
        return done

    async def _give_up(self, request_id: str, item: _Pending) -> bool:
        try:  # released without a usage event: the event may be what the schema refused
            await self._meter.settle(item.reservation, None)
        except Exception as exc:  # still failing: keep it pending, retried with the backoff
            log.error("release of %s failed: %s", request_id, _reason(exc))
            return False
        log.error(
            "settlement of %s failed %d times: reservation of %d credits released uncharged",
            request_id,
            item.failures,
            item.reservation.amount_credits,
        )
        self._landed(item.usage, 0)
        return True

    def _landed(self, usage: UsageRecord | None, charged: int) -> None:
        if self.on_landed is not None:
            self.on_landed(usage, charged)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) and exc.__cause__ else exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
