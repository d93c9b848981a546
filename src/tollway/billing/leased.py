"""Settling a request reserved against a credit lease (`billing/leases.py`): in memory in
the common case; usage beyond the reservation from the lease's free credits, then the
balance (one transaction), the rest a recorded shortfall; a request whose lease was taken
for dead charged from the balance (`billing/closing.py`)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tollway.billing.closing import charge_overrun, charge_without_lease, cost_of, described
from tollway.billing.leases import Leases
from tollway.clock import Clock
from tollway.store.database import Database

if TYPE_CHECKING:
    from tollway.billing.records import Reservation, UsageRecord


class LeasedSettlement:
    """`unsettled`: the meter's set of this process's open request ids (shared: a request
    leaves it once settled, by whichever path)."""

    def __init__(self, db: Database, clock: Clock, leases: Leases, unsettled: set[str]) -> None:
        self._db = db
        self._clock = clock
        self._leases = leases
        self._unsettled = unsettled
        # Request ids whose settlement is writing to the database now: it owns the request
        # until the write ends, so a release meanwhile (a request task cancelled while its
        # settlement is on the wire) must not close it with no charge.
        self._writing: set[str] = set()

    def settle_now(
        self, reservation: Reservation, lease_id: str, usage: UsageRecord | None
    ) -> int | None:
        """The settlement when it needs no database (the common case: the usage fits the
        reservation or the lease's free credits), done at once; None when it does (`settle`)."""
        request_id = reservation.request_id
        if request_id not in self._unsettled or request_id in self._writing:
            return 0  # settled already, or being settled: charged once
        if not self._leases.is_open(lease_id):
            return None
        cost = cost_of(usage)
        extra = cost - reservation.amount_credits
        from_lease = self._leases.take_more(lease_id, extra) if extra > 0 else 0
        if extra > from_lease:
            self._leases.untake(lease_id, from_lease)
            return None
        return self._close(reservation, lease_id, usage, cost, from_lease, 0)

    async def settle(
        self, reservation: Reservation, lease_id: str, usage: UsageRecord | None
    ) -> int:
        settled = self.settle_now(reservation, lease_id, usage)
        if settled is not None:
            return settled
        request_id = reservation.request_id
        self._writing.add(request_id)
        try:
            return await self._settle_in_database(reservation, lease_id, usage)
        finally:
            self._writing.discard(request_id)

    async def _settle_in_database(
        self, reservation: Reservation, lease_id: str, usage: UsageRecord | None
    ) -> int:
        request_id = reservation.request_id
        cost = cost_of(usage)
        payer = reservation.payer
        if not self._leases.is_open(lease_id):
            return await self._without_lease(reservation, usage, cost)
        extra = cost - reservation.amount_credits
        # Usage beyond the reservation: from the lease's free credits first (in memory),
        # the rest from the balance (one transaction), what neither covers a shortfall.
        from_lease = self._leases.take_more(lease_id, extra)
        try:
            from_balance = await self._db.run_write(
                partial(
                    charge_overrun,
                    user_id=payer.user_id,
                    request_id=request_id,
                    extra=extra - from_lease,
                    windows=(),
                    now=int(self._clock()),
                )
            )
        except BaseException:
            self._leases.untake(lease_id, from_lease)  # retried whole (idempotent)
            raise
        if request_id not in self._unsettled:  # settled meanwhile by a retry
            self._leases.untake(lease_id, from_lease)
            return 0
        return self._close(reservation, lease_id, usage, cost, from_lease, from_balance)

    def _close(
        self,
        reservation: Reservation,
        lease_id: str,
        usage: UsageRecord | None,
        cost: int,
        from_lease: int,
        from_balance: int,
    ) -> int:
        """Give the reservation back to its lease and queue the charge and usage event for
        the lease's next group commit; returns the charge."""
        request_id = reservation.request_id
        payer = reservation.payer
        self._unsettled.discard(request_id)
        charge = min(cost, reservation.amount_credits) + from_lease
        row = None  # nothing served: released, no usage event (as in the database path)
        if usage is not None:
            row = {
                "request_id": request_id,
                "created_at": int(self._clock()),
                "user_id": payer.user_id,
                "project_id": payer.project_id,
                "key_id": payer.key_id,
                "cost_credits": charge + from_balance,
                **described(usage, payer),
            }
        self._leases.settle(
            lease_id,
            reserved=reservation.amount_credits + from_lease,
            request_id=request_id,
            charge=charge,
            usage=row,
        )
        return charge + from_balance

    async def _without_lease(
        self, reservation: Reservation, usage: UsageRecord | None, cost: int
    ) -> int:
        """The request's lease is gone: a sweeper released it (with this request's hold)
        while this process was paused and taken for dead. Charged from the balance as far
        as it goes, the rest a recorded shortfall (`closing.charge_without_lease`)."""
        payer = reservation.payer
        now = int(self._clock())
        row = None
        if usage is not None:
            row = {
                "request_id": reservation.request_id,
                "created_at": now,
                "user_id": payer.user_id,
                "project_id": payer.project_id,
                "key_id": payer.key_id,
                "cost_credits": 0,
                **described(usage, payer),
            }
        charged = await self._db.run_write(
            partial(
                charge_without_lease,
                user_id=payer.user_id,
                request_id=reservation.request_id,
                cost=cost,
                usage=row,
                now=now,
            )
        )
        self._unsettled.discard(reservation.request_id)
        return charged
