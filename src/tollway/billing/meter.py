"""The meter: reserve a request's worst-case cost before it is forwarded, settle it to the
exact cost afterwards (docs/billing.md). Each step is one database transaction.

Why it cannot overdraw: the reservation locks the user's row (PostgreSQL ``FOR UPDATE``;
SQLite holds the database write lock from ``BEGIN IMMEDIATE``) and the budget windows in key
order, decides against what it read under that lock, and debits with a conditional UPDATE
(``balance >= amount``) as a second guard. A settlement only ever gives back part of what
was reserved, so it cannot make a balance negative either.

Each transaction is one synchronous function run by `Database.run_write` (one thread hop on
SQLite, none on PostgreSQL). The common case — no budget, the balance covering the worst
case — reserves in three statements (conditional debit that also re-checks the key, ledger
row, reservation row) and settles in four; on PostgreSQL each is instead ONE statement run
without a transaction (`store/one_statement.py`: one round trip), falling back to the
transaction when it changes nothing.

Settling is durable until done: `settle_durably` hands a settlement the database refused to
`PendingSettlements` (`billing/settlement.py`), which retries it until it lands. The meter
also knows which of its reservations are still open in this process (`is_open`), so the
instance can release any of its own that nothing will settle (`Recovery.reconcile`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sqlalchemy import Connection

from tollway.billing.budgets import describe, eur, window_key_of
from tollway.billing.closing import (
    charge_overrun,
    close,
    cost_of,
    described,
    record_usage,
    release_unsettled,
)
from tollway.billing.leased import LeasedSettlement
from tollway.billing.leases import Leases
from tollway.billing.quote import Quote
from tollway.billing.records import (
    Payer,
    Reservation,
    ReserveRequest,
    UsageRecord,
)
from tollway.billing.settlement import MAX_PENDING, PendingSettlements
from tollway.cache import Flights
from tollway.clock import Clock
from tollway.errors import BudgetExceeded, DatabaseUnavailable, InsufficientBalance, Unauthorized
from tollway.store import budgets as budget_store
from tollway.store import one_statement
from tollway.store import reservations as store
from tollway.store.budgets import BudgetRow, WindowKey
from tollway.store.database import Database
from tollway.store.reservations import OpenReservation
from tollway.tasks import TaskTracker

log = logging.getLogger("tollway.billing")


class Meter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        instance_id: str,
        leases: Leases | None = None,
        tasks: TaskTracker | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._db = db
        self._clock = clock
        self.instance_id = instance_id
        self.leases = leases
        # Request ids of this process's reservations not known to be closed yet: in flight,
        # or waiting in `pending` for the database.
        self._unsettled: set[str] = set()
        self.pending = PendingSettlements(self, tasks or TaskTracker(), max_pending)
        self._leased = (
            None if leases is None else LeasedSettlement(db, clock, leases, self._unsettled)
        )
        self._budget_reads: Flights[tuple[str, int], tuple[BudgetRow, ...]] = Flights()

    def is_open(self, request_id: str) -> bool:
        """Whether this process may still settle `request_id` (in flight or pending), or
        still holds it (a credit lease)."""
        if self.leases is not None and self.leases.is_open(request_id):
            return True
        return request_id in self._unsettled

    async def sync(self) -> None:
        """Write what this process has charged but not committed yet (read-your-writes for
        the balance and usage reads of the Management API)."""
        if self.leases is None:
            return
        try:
            await self.leases.flush()
        except DatabaseUnavailable:
            raise
        except Exception:  # a bug in one group: the read shows what is written
            log.exception("credit lease commit failed")

    def forget(self, request_id: str) -> None:
        self._unsettled.discard(request_id)

    async def reserve(self, request: ReserveRequest) -> Reservation:
        """Hold the request's worst-case cost against the balance and every applicable
        budget in one transaction; lower max_tokens to what they cover, or refuse."""
        if request.prompt_tokens < 0 or request.max_tokens < 0:
            raise ValueError("token counts cannot be negative")
        if self.pending.full:  # backpressure: nothing new joins the backlog
            raise DatabaseUnavailable(
                f"{len(self.pending)} settlements are waiting for the database; retry shortly"
            )
        quote = Quote.of(
            request.input_price, request.prompt_tokens, request.output_price, request.max_tokens
        )
        if self.leases is not None:
            leased = await self._reserve_leased(request, quote.full)
            if leased is not None:
                return leased
        now = int(self._clock())
        request_id = request.payer.request_id
        self._unsettled.add(request_id)  # before it can exist in the database
        try:
            if self._db.is_sqlite:  # one thread hop for the whole transaction already
                return await self._db.run_write(
                    partial(self._reserve, request, quote, now, debit_first=True)
                )
            fast = await self._reserve_in_one_statement(request, quote.full, now)
            if fast is not None:
                return fast
            transaction = partial(self._reserve, request, quote, now, debit_first=False)
            return await self._db.run_write(transaction)
        except asyncio.CancelledError:
            # The transaction may have committed all the same (in its thread, or while the
            # COMMIT or the one statement was on the wire): give the credits back now rather
            # than at shutdown. On SQLite this runs after it on the same writer thread.
            undo = Reservation(request_id, request.payer, 0, 0, False)
            await asyncio.shield(self.settle_durably(undo, None))
            raise
        except DatabaseUnavailable as exc:
            # The same doubt, the database away: the retrier releases it once it is back
            # (no attempt now, which would only make the 503 wait for a second failure).
            self.pending.add(Reservation(request_id, request.payer, 0, 0, False), None, exc)
            raise
        except BaseException:  # refused (401, 402, 429) or a bug: nothing was written
            self._unsettled.discard(request_id)
            raise

    async def _reserve_leased(self, request: ReserveRequest, full: int) -> Reservation | None:
        """No budget applying: reserve the worst case in memory against this process's
        credit lease (drawn or topped up first when short). None: the database decides."""
        assert self.leases is not None
        payer = request.payer
        if await self._budgets_apply(payer):
            return None
        path = "lease"
        lease_id = self.leases.take(payer.user_id, full)
        if lease_id is None:
            if not await self.leases.draw(payer.user_id, full):
                return None
            path = "lease_after_draw"
            lease_id = self.leases.take(payer.user_id, full)
            if lease_id is None:
                return None
        self._unsettled.add(payer.request_id)
        return Reservation(
            payer.request_id, payer, full, request.max_tokens, False, lease=lease_id, path=path
        )

    async def _budgets_apply(self, payer: Payer) -> bool:
        index = self._db.budget_index
        project = payer.project_id
        budgets = index.get(project)
        if budgets is None:
            # One statement to read them (cached for a second), one read per project in
            # flight: when the entry expired under load, every request arriving meanwhile
            # read them again, each a round trip that waited for a turn of a busy loop and for
            # the pool — on PostgreSQL at c=256 ~8% of the requests waited 0.25-0.5 s here
            # (bench/README.md, "a stampede of budget reads"). A read begun before a budget
            # changed through this process is not joined (its generation is older), as the
            # index itself does not store it.
            budgets = await self._budget_reads.run(
                (project, index.generation),
                partial(self._db.run_autocommit, partial(index.budgets_of, project_id=project)),
            )
        return bool(budget_store.applicable(budgets, user_id=payer.user_id, key_id=payer.key_id))

    async def _reserve_in_one_statement(
        self, request: ReserveRequest, full: int, now: int
    ) -> Reservation | None:
        """PostgreSQL, no budget applying and the balance covering the worst case: reserve
        it in one statement. None: budgets apply, the balance is short of the worst case or
        the key is gone; nothing was written, and the transaction decides."""
        payer = request.payer
        if await self._budgets_apply(payer):
            return None
        if not await self._db.run_autocommit(
            partial(one_statement.reserve, r=self._opened(payer, full, (), now))
        ):
            return None
        return Reservation(payer.request_id, payer, full, request.max_tokens, False)

    def _reserve(
        self,
        request: ReserveRequest,
        quote: Quote,
        now: int,
        conn: Connection,
        *,
        debit_first: bool,
    ) -> Reservation:
        payer = request.payer
        full, minimum = quote.full, quote.minimum
        budgets = self._db.budget_index.budgets_of(conn, payer.project_id)
        applicable = budget_store.applicable(budgets, user_id=payer.user_id, key_id=payer.key_id)
        # `debit_first` is False when the one-statement reserve just found this not to be the
        # common case: no need to try it again.
        if (
            debit_first
            and not applicable
            and store.debit_if_key_alive(
                conn, user_id=payer.user_id, key_id=payer.key_id, amount=full
            )
        ):
            # No budget, the key alive and the balance covering the worst case: what the
            # decision below would conclude, in one statement.
            return self._open(conn, request, full, request.max_tokens, (), now)
        locked = store.lock_payer(conn, user_id=payer.user_id, key_id=payer.key_id)
        if locked is None or not locked[1]:
            raise Unauthorized("invalid API key")
        balance = locked[0]
        if balance < minimum:
            raise InsufficientBalance(
                f"insufficient balance: this request needs at least {eur(minimum)} EUR, "
                f"{eur(max(balance, 0))} EUR left"
            )
        held: dict[WindowKey, BudgetRow] = {
            window_key_of(b, user_id=payer.user_id, key_id=payer.key_id, now=now): b
            for b in applicable
        }
        room = balance
        if held:
            windows = budget_store.lock_windows(conn, list(held))
            for key in sorted(held):
                window = windows.get(key)
                if window is None:  # the budget was deleted meanwhile: it no longer applies
                    continue
                budget = held[key]
                left = budget.limit_credits - window.spent_credits - window.reserved_credits
                if left < minimum:
                    raise BudgetExceeded(describe(budget, key[2], needed=minimum, left=left))
                room = min(room, left)
            held = {k: b for k, b in held.items() if k in windows}
        amount, granted = full, request.max_tokens
        if room < full:
            granted = quote.tokens_within(room)
            amount = quote.cost(granted)
        if not store.debit(conn, user_id=payer.user_id, amount=amount):
            raise InsufficientBalance("insufficient balance")
        window_keys = tuple(sorted(held))
        if window_keys:
            budget_store.move_windows(conn, window_keys, reserved_delta=amount, spent_delta=0)
        return self._open(conn, request, amount, granted, window_keys, now)

    def _open(
        self,
        conn: Connection,
        request: ReserveRequest,
        amount: int,
        granted: int,
        window_keys: tuple[WindowKey, ...],
        now: int,
    ) -> Reservation:
        """The balance is debited already: the ledger row and the reservation row."""
        payer = request.payer
        store.append_ledger(conn, payer.user_id, payer.request_id, now, [("reserve", -amount)])
        store.open_reservation(conn, self._opened(payer, amount, window_keys, now))
        return Reservation(
            request_id=payer.request_id,
            payer=payer,
            amount_credits=amount,
            max_tokens=granted,
            lowered=granted < request.max_tokens,
            windows=window_keys,
        )

    def _opened(
        self, payer: Payer, amount: int, window_keys: tuple[WindowKey, ...], now: int
    ) -> OpenReservation:
        return OpenReservation(
            request_id=payer.request_id,
            user_id=payer.user_id,
            project_id=payer.project_id,
            key_id=payer.key_id,
            amount_credits=amount,
            windows=window_keys,
            instance_id=self.instance_id,
            created_at=now,
        )

    async def settle_durably(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        """Settle now, or — when the database refuses — hand the settlement to `pending`,
        which retries it until it lands; never raises for that. Returns the charge (when
        deferred, the cost: what it charges unless the balance cannot cover usage beyond the
        reservation)."""
        try:
            return await self.settle(reservation, usage)
        except asyncio.CancelledError:
            self.pending.add(reservation, usage, DatabaseUnavailable("cancelled mid-write"))
            raise
        except Exception as exc:  # the durability boundary: whatever failed, retry it
            self.pending.add(reservation, usage, exc)
            return cost_of(usage)  # what it will charge when the balance covers it

    def settle_now(self, reservation: Reservation, usage: UsageRecord | None) -> int | None:
        """Settle at once when no database write is needed — a reservation against an open
        credit lease whose usage fits it or the lease's free credits — and return the charge;
        None when a write is needed (then `settle_durably`). Nothing to await, so nothing
        can interrupt it half-way."""
        if reservation.lease is None:
            return None
        assert self._leased is not None
        return self._leased.settle_now(reservation, reservation.lease, usage)

    async def settle(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        """Release the reservation and charge exactly the usage, with its usage event, in one
        transaction. Usage beyond the reservation is charged as far as the balance allows,
        the rest recorded as a shortfall in the ledger (`closing.charge_overrun`). Settling
        twice charges once. One attempt: raises `DatabaseUnavailable` when the database
        does not answer.

        A reservation against a credit lease is settled in memory (a write only for usage
        beyond the reservation that the lease cannot cover); its charge and usage event are
        written by the lease's next group commit."""
        if reservation.lease is not None:
            assert self._leased is not None
            return await self._leased.settle(reservation, reservation.lease, usage)
        charged = await self._settle_once(reservation, usage)
        self._unsettled.discard(reservation.request_id)
        return charged

    async def _settle_once(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        cost = cost_of(usage)
        now = int(self._clock())
        if not self._db.is_sqlite and not reservation.windows:
            # PostgreSQL: claim and close in one statement. None: nothing claimed (settled
            # already, released, holding budget windows, or usage beyond the reservation,
            # which `charge_overrun` handles): the transaction tells which.
            closed = await self._db.run_autocommit(
                partial(
                    one_statement.settle,
                    request_id=reservation.request_id,
                    cost=cost,
                    now=now,
                    usage=None if usage is None else described(usage, reservation.payer),
                )
            )
            if closed is not None:
                return closed[1]
        return await self._db.run_write(partial(self._settle, reservation, usage, cost, now))

    def _settle(
        self,
        reservation: Reservation,
        usage: UsageRecord | None,
        cost: int,
        now: int,
        conn: Connection,
    ) -> int:
        held = store.claim_reservation(conn, reservation.request_id)
        if held is None:  # settled already, or released by recovery
            return store.charged_for(conn, reservation.request_id)
        charge = min(cost, held.amount_credits)
        close(conn, held, charge, now)
        if cost > held.amount_credits:
            charge += charge_overrun(
                conn,
                user_id=held.user_id,
                request_id=held.request_id,
                extra=cost - held.amount_credits,
                windows=held.windows,
                now=now,
            )
        if usage is not None:
            record_usage(conn, held, now, charge, described(usage, reservation.payer))
        return charge

    async def release_abandoned(self, request_id: str) -> bool:
        """Release a reservation nobody will settle (its process died or is shutting down):
        charge nothing, record an "aborted" usage event. False if it was closed already."""
        now = int(self._clock())
        return await self._db.run_write(partial(release_unsettled, request_id, now))
