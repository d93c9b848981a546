"""Recovery of reservations whose process died (docs/billing.md).

Each gateway process registers an ``instances`` row and beats every ``heartbeat_s``. The same
background task sweeps: a reservation whose instance is gone, or silent for longer than
``reservation_stale_s``, is released in full. Releasing claims the reservation row first, so
a sweeper on every replica and a late settlement can race without charging or releasing twice.

The same task reconciles this instance's own reservations: one that the meter no longer
counts as open (nothing in this process will settle it — e.g. a reservation whose undo could
not be written) is released, so a live instance never holds credits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollway.billing.meter import Meter
from tollway.clock import Clock
from tollway.errors import DatabaseUnavailable
from tollway.store import reservations as store
from tollway.store.database import Database
from tollway.tasks import TaskTracker

log = logging.getLogger("tollway.billing")


class Recovery:
    def __init__(
        self,
        db: Database,
        meter: Meter,
        clock: Clock,
        *,
        heartbeat_s: float,
        stale_s: float,
        shutdown_settle_s: float = 5.0,
        tasks: TaskTracker | None = None,
    ) -> None:
        self._tracker = tasks or TaskTracker()
        self._db = db
        self._meter = meter
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._stale_s = stale_s
        self._shutdown_settle_s = shutdown_settle_s
        self._task: asyncio.Task[None] | None = None

    @property
    def instance_id(self) -> str:
        return self._meter.instance_id

    async def register(self) -> None:
        async with self._db.write() as conn:
            await store.register_instance(conn, self.instance_id, int(self._clock()))

    async def beat(self) -> None:
        async with self._db.write() as conn:
            alive = await store.heartbeat(conn, self.instance_id, int(self._clock()))
            if not alive:  # presumed dead and forgotten after a long pause: come back
                await store.register_instance(conn, self.instance_id, int(self._clock()))

    async def sweep(self) -> int:
        """Release every abandoned reservation; returns how many this call released."""
        stale_before = int(self._clock() - self._stale_s)
        released = 0
        while True:
            async with self._db.read() as conn:
                batch = await store.abandoned_reservations(conn, stale_before=stale_before)
            done = 0
            for request_id in batch:
                if await self._meter.release_abandoned(request_id):
                    done += 1
            released += done
            if len(batch) < 500 or done == 0:
                break
        async with self._db.write() as conn:
            await store.drop_dead_instances(conn, stale_before=stale_before)
        if released:
            log.warning("released %d reservation(s) of dead gateway processes", released)
        return released

    async def reconcile(self) -> int:
        """Release this instance's reservations that nothing in this process will settle
        (neither in flight nor pending); returns how many this call released."""
        async with self._db.read() as conn:
            mine = await store.reservations_of_instance(conn, self.instance_id)
        released = 0
        for request_id in mine:
            # Read before checking: a reservation settled meanwhile is claimed already and
            # `release_abandoned` finds nothing; one opened meanwhile is in the open set.
            if not self._meter.is_open(request_id):
                released += await self._meter.release_abandoned(request_id)
        if released:
            log.warning("released %d orphaned reservation(s) of this instance", released)
        return released

    async def release_own(self, *, keep: frozenset[str] = frozenset()) -> int:
        """On shutdown, after in-flight requests ended: nothing of ours will settle any more,
        except the settlements in `keep` (still pending: left for the sweeper)."""
        async with self._db.read() as conn:
            mine = await store.reservations_of_instance(conn, self.instance_id)
        released = 0
        for request_id in mine:
            if request_id not in keep and await self._meter.release_abandoned(request_id):
                released += 1
        return released

    async def start(self) -> None:
        """Register (before any reservation is made) and start the heartbeat/sweep task."""
        await self.register()
        await self.sweep()
        self._task = self._tracker.spawn(
            self._run(), f"tollway-recovery-{self.instance_id}", service=True
        )
        if self._meter.leases is not None:
            self._meter.leases.start()

    async def stop(self) -> None:
        """Cancel and await the task, land the pending settlements (bounded by
        `shutdown_settle_s`), release our leftovers, deregister. Best effort: what cannot be
        written stays open under this instance, and a sweeper releases it once the
        instance's heartbeat is stale."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        left = await self._meter.pending.close(self._shutdown_settle_s)
        if self._meter.leases is not None:  # commit their charges, give them back
            await self._meter.leases.close(self._shutdown_settle_s)
        try:
            await self.release_own(keep=frozenset(left))
            if not left:
                async with self._db.write() as conn:
                    await store.forget_instance(conn, self.instance_id)
        except Exception as exc:  # the outermost edge of shutdown: another replica's sweeper
            log.error("could not release this process's reservations on shutdown: %r", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.beat()
                await self.sweep()
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:  # keep beating: the database will be back
                continue
            except Exception:  # keep beating through anything else, loudly
                log.exception("heartbeat or sweep failed")
