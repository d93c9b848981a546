"""Credit leases: the money off the request path (docs/billing.md, "Credit leases").

A gateway process draws a lease from a user's balance in one transaction (the balance is
debited, a ``lease`` ledger row written, the lease held as a reservation row of this
instance). Requests are then reserved against the lease in memory — an integer subtraction
on the event loop, so two requests can never take the same credits — and settled in memory.
Their charges and usage events are group-committed every `flush_s` in one transaction,
which moves what they cost from the lease to the requests (``release`` row for the lease,
``charge`` row per request; the balance does not move, the lease had taken it). A lease is
topped up ahead of need, in the background, when less than half of its last draw is free;
given back to the balance after `idle_s` without use, when the balance runs short, and on
shutdown.

Why the balance never goes below zero, on any number of replicas: a draw is a conditional
debit under the user's row lock, and takes at most 1/`share` of the balance; requests only
spend what their lease holds. After a clean shutdown every charge is committed and every
lease given back: the ledger is exact. After a crash, the charges not yet committed (at most
`flush_s` of them) are lost — in the user's favour: the lease row is released in full by the
sweeper of another replica or of the successor (`billing/recovery.py`), like any reservation
of a dead process.

Leases cover the balance only: a request to which a budget applies is reserved in the
database as before (`Meter`), so budget windows stay exact across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from tollway.billing.lease_groups import Group, Lease, commit_groups
from tollway.clock import Clock
from tollway.errors import DatabaseUnavailable
from tollway.ids import new_id
from tollway.store import leases as store
from tollway.store.database import Database
from tollway.store.reservations import LEASE_PREFIX, entry_id
from tollway.tasks import TaskTracker

log = logging.getLogger("tollway.billing")

# A group that fails for a reason other than the database being away (a bug) is retried
# this many times, then dropped with its loss logged: its credits stay in the lease row and
# go back to the balance with it.
MAX_FAILED_COMMITS = 5
# A request that finds the lease empty waits for at most this many draws before the database
# reserves it (each draw covers twice the requests in flight, so one is the rule).
MAX_DRAWS_PER_REQUEST = 3


class Leases:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        instance_id: str,
        flush_s: float = 0.025,
        idle_s: float = 2.0,
        share: int = 4,
        depth: int = 64,
        on_key_gone: Callable[[int], None] = lambda key_id: None,
        monotonic: Callable[[], float] = time.monotonic,
        tasks: TaskTracker | None = None,
    ) -> None:
        self._tracker = tasks or TaskTracker()
        self._db = db
        self._clock = clock
        self._instance_id = instance_id
        self._flush_s = flush_s
        self._idle_s = idle_s
        self._share = share
        self._depth = depth
        self._monotonic = monotonic
        self._on_key_gone = on_key_gone
        self._by_user: dict[str, Lease] = {}
        self._by_id: dict[str, Lease] = {}
        self._forming: dict[str, Group] = {}  # lease id -> the group now collecting charges
        self._waiting: list[Group] = []  # closed groups, not committed yet (oldest first)
        self._commits = 0
        self._failing = False
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- the request path (no database) ------------------------------------------------

    def is_open(self, lease_id: str) -> bool:
        return lease_id in self._by_id

    def take(self, user_id: str, amount: int) -> str | None:
        """Reserve `amount` from the user's lease in memory; None when it cannot (no lease,
        too little free, the database failing the group commit, the balance short lately)."""
        lease = self._by_user.get(user_id)
        if lease is None or self._failing or amount <= 0:
            return None
        now = self._monotonic()
        if lease.starved_until > now or lease.free < amount:
            return None
        lease.reserved += amount
        lease.used_at = now
        lease.largest_need = max(lease.largest_need, amount)
        if lease.free < lease.last_draw // 2 and lease.drawing is None:
            lease.drawing = self._tracker.spawn(self._draw(lease, 0), "tollway-lease-topup")
        return lease.lease_id

    async def draw(self, user_id: str, need: int) -> bool:
        """Open or top up the user's lease so that `need` fits; False when the balance cannot
        spare it (the lease's free credits then go back to the balance, and for `idle_s` the
        user's requests are reserved in the database, exactly against the whole balance)."""
        if self._failing:
            return False
        lease = self._by_user.get(user_id)
        if lease is None:
            lease = Lease(lease_id=LEASE_PREFIX + new_id(), user_id=user_id)
            self._by_user[user_id] = lease
            self._by_id[lease.lease_id] = lease  # before its row can exist (reconcile)
        elif lease.starved_until > self._monotonic():
            return False
        lease.largest_need = max(lease.largest_need, need)
        for _ in range(MAX_DRAWS_PER_REQUEST):
            if lease.drawing is None:
                lease.drawing = self._tracker.spawn(self._draw(lease, need), "tollway-lease")
            with contextlib.suppress(Exception):  # failures are the task's to log
                await asyncio.shield(lease.drawing)
            if lease.free >= need:
                return True
            if lease.short:
                break
            # The draw got all it asked for, but the requests waiting with this one took it
            # first: the balance is not short, so draw again (sized by what is in flight now)
            # rather than send them to the database.
        if lease.held == 0:
            self._forget(lease)
        else:
            lease.starved_until = self._monotonic() + self._idle_s
            await self._give_back_free(lease)
        return False

    def take_more(self, lease_id: str, amount: int) -> int:
        """Reserve up to `amount` more from this lease's free credits (usage beyond a
        request's reservation); returns what it could take."""
        lease = self._by_id.get(lease_id)
        if lease is None or amount <= 0:
            return 0
        taken = min(amount, max(lease.free, 0))
        lease.reserved += taken
        return taken

    def untake(self, lease_id: str, amount: int) -> None:
        """Give back what `take_more` took (its settlement failed and will be retried)."""
        lease = self._by_id.get(lease_id)
        if lease is not None and amount > 0:
            lease.reserved -= amount

    def settle(
        self,
        lease_id: str,
        *,
        reserved: int,
        request_id: str,
        charge: int,
        usage: dict[str, Any] | None,
    ) -> None:
        """Give the request's reservation back to its lease and queue its charge and usage
        event (`usage`: the whole `usage_events` row) for the next group commit."""
        lease = self._by_id.get(lease_id)
        if lease is None:  # gone (released by a sweeper): nothing left to charge against
            log.error("lease %s is gone: request %s not charged", lease_id, request_id)
            return
        lease.reserved -= reserved
        if usage is None and not charge:
            return  # released: nothing to write
        lease.unflushed += charge
        lease.spent += charge
        group = self._forming.get(lease_id)
        if group is None:
            self._commits += 1
            group = Group(lease, f"release:{lease_id}:{self._commits}")
            self._forming[lease_id] = group
        group.total += charge
        if charge:
            group.charges.append(
                {
                    "entry_id": entry_id("charge", request_id),
                    "request_id": request_id,
                    "amount": charge,
                }
            )
        if usage is not None:
            group.usage.append(usage)

    # -- the background ------------------------------------------------------------------

    def start(self) -> None:
        self._task = self._tracker.spawn(
            self._run(), f"tollway-leases-{self._instance_id}", service=True
        )

    async def close(self, timeout_s: float) -> bool:
        """On shutdown, once requests ended: commit every charge and give every lease back,
        retrying for at most `timeout_s`. False when something could not be written (the
        lease rows then stay, and a sweeper releases them in full)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deadline = self._monotonic() + timeout_s
        while True:
            try:
                await self.flush()
                for lease in list(self._by_id.values()):
                    if lease.drawing is not None:
                        with contextlib.suppress(Exception):
                            await lease.drawing
                    await self._give_back(lease)
                return True
            except Exception as exc:
                if self._monotonic() >= deadline:
                    log.error("could not close this process's credit leases: %r", exc)
                    return False
                await asyncio.sleep(0.1)

    async def flush(self) -> None:
        """Group-commit every queued charge now (one transaction); raises when the database
        refuses (the charges stay queued, in order)."""
        async with self._flush_lock:
            self._waiting.extend(self._forming.values())
            self._forming.clear()
            if not self._waiting:
                # Nothing to prove the database back with: let the next request try (the
                # direct path or its group commit says again if it is still away).
                self._failing = False
                return
            groups = list(self._waiting)
            now = int(self._clock())
            try:
                lost, gone = await self._db.run_write(partial(commit_groups, groups, now))
            except DatabaseUnavailable:
                self._failing = True
                raise
            except Exception:
                self._failing = False
                self._drop_failing(groups)
                raise
            self._failing = False
            del self._waiting[: len(groups)]
            for key_id in gone:  # deleted (through any replica): refused from now on
                self._on_key_gone(key_id)
            for group in groups:
                group.lease.unflushed -= group.total
                if group in lost:
                    log.error(
                        "lease %s was released while this process held it (taken for dead):"
                        " its %d credits of charges were taken from the balance instead"
                        " (any part it could not cover recorded as a shortfall)",
                        group.lease.lease_id,
                        group.total,
                    )
                    self._forget(group.lease)
                else:
                    group.lease.held -= group.total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self.flush()
                await self._return_idle()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                continue
            except Exception:
                log.exception("credit lease commit failed")

    async def _draw(self, lease: Lease, need: int) -> bool:
        try:
            # Enough for `depth` of the largest request seen, for a second of what the lease
            # has been spending, or for twice the requests in flight, whichever is more. The
            # last one matters under high concurrency: with more requests in flight than
            # `depth`, the requests in flight alone emptied the lease, and every request
            # that found it empty waited for a draw, a transaction queued behind the group
            # commits and the request log (bench/README.md, "Lease draws under concurrency").
            now = self._monotonic()
            elapsed = now - lease.drawn_at if lease.drawn_at else 0.0
            per_second = int(lease.spent / elapsed) if elapsed > 0 else 0
            in_flight = 2 * lease.reserved + need
            want = max(self._depth * max(lease.largest_need, need), per_second, in_flight)
            lease.drawn_at, lease.spent = now, 0
            lease.draws += 1
            taken, existed = await self._db.run_write(
                partial(
                    store.draw,
                    lease_id=lease.lease_id,
                    entry_id=f"lease:{lease.lease_id}:{lease.draws}",
                    user_id=lease.user_id,
                    want=want,
                    need=max(need, 1),
                    share=self._share,
                    instance_id=self._instance_id,
                    now=int(self._clock()),
                )
            )
            lease.short = taken < want
            if taken:
                if not existed and lease.held:
                    log.error("lease %s was released by a sweeper; drawn anew", lease.lease_id)
                    lease.held = 0
                lease.held += taken
                lease.last_draw = taken
            return taken > 0
        except Exception as exc:
            lease.short = True
            log.warning("could not draw a credit lease for user %s: %r", lease.user_id, exc)
            return False
        finally:
            lease.drawing = None

    async def _return_idle(self) -> None:
        now = self._monotonic()
        for lease in list(self._by_id.values()):
            if now - lease.used_at >= self._idle_s and lease.drawing is None:
                await self._give_back(lease)

    async def _give_back(self, lease: Lease) -> None:
        """Close an unused lease: what it holds goes back to the balance."""
        if lease.reserved or lease.unflushed:
            return
        # Forgotten first: should the write fail, the row is still this instance's and no
        # longer open here, so `Recovery.reconcile` releases it.
        self._forget(lease)
        await self._db.run_write(
            partial(
                store.give_back,
                lease_id=lease.lease_id,
                entry_id=f"release:{lease.lease_id}:end",
                user_id=lease.user_id,
                now=int(self._clock()),
            )
        )

    async def _give_back_free(self, lease: Lease) -> None:
        """The balance runs short: what the lease holds beyond its requests in flight and
        its uncommitted charges goes back to the balance, where the database reserves
        against it; the lease itself closes once idle."""
        amount = lease.free
        if amount <= 0:
            return
        self._commits += 1
        lease.held -= amount  # before the write: a request cannot take it meanwhile
        try:
            shrunk = await self._db.run_write(
                partial(
                    store.shrink,
                    lease_id=lease.lease_id,
                    entry_id=f"release:{lease.lease_id}:{self._commits}",
                    user_id=lease.user_id,
                    amount=amount,
                    now=int(self._clock()),
                )
            )
        except Exception:
            shrunk = False
        if not shrunk:  # not written (or gone): the credits stay in the lease
            lease.held += amount

    def _forget(self, lease: Lease) -> None:
        if self._by_user.get(lease.user_id) is lease:
            del self._by_user[lease.user_id]
        self._by_id.pop(lease.lease_id, None)

    def _drop_failing(self, groups: list[Group]) -> None:
        """A commit refused for another reason than availability: count it against every
        group of the batch; drop the ones that failed too often (their credits go back to
        the balance with their lease), so one bad row cannot block the rest forever."""
        for group in groups:
            group.failures += 1
            if group.failures >= MAX_FAILED_COMMITS:
                self._waiting.remove(group)
                group.lease.unflushed -= group.total
                log.error(
                    "lease %s: %d charge(s), %d credits, could not be recorded; dropped",
                    group.lease.lease_id,
                    len(group.charges),
                    group.total,
                )
