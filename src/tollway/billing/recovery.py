"""Recovery of reservations whose process died (docs/billing.md).

Each gateway process registers an ``instances`` row and beats every ``heartbeat_s``. The same
background task sweeps: a reservation whose instance is gone, or silent for longer than
``reservation_stale_s``, is released in full. Releasing claims the reservation row first, so
a sweeper on every replica and a late settlement can race without charging or releasing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollway.billing.meter import Meter
from tollway.clock import Clock
from tollway.store import reservations as store
from tollway.store.database import Database

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
    ) -> None:
        self._db = db
        self._meter = meter
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._stale_s = stale_s
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

    async def release_own(self) -> int:
        """On shutdown, after in-flight requests ended: nothing of ours will settle any more."""
        async with self._db.read() as conn:
            mine = await store.reservations_of_instance(conn, self.instance_id)
        released = 0
        for request_id in mine:
            if await self._meter.release_abandoned(request_id):
                released += 1
        return released

    async def start(self) -> None:
        """Register (before any reservation is made) and start the heartbeat/sweep task."""
        await self.register()
        await self.sweep()
        self._task = asyncio.create_task(self._run(), name=f"tollway-recovery-{self.instance_id}")

    async def stop(self) -> None:
        """Cancel and await the task, release our leftovers, deregister. Best effort."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.release_own()
            async with self._db.write() as conn:
                await store.forget_instance(conn, self.instance_id)
        except Exception:  # the outermost edge of shutdown: the sweeper of another replica
            log.exception("could not release this process's reservations on shutdown")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.beat()
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep beating through a transient database error
                log.exception("heartbeat or sweep failed")
