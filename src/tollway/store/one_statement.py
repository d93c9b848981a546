"""The meter's common case on PostgreSQL in one statement each, run without a transaction
around it (`Database.run_autocommit`): a statement is atomic by itself, and BEGIN and COMMIT
would be two more round trips.

Both are data-modifying CTEs driven by one guarded row: reserve by the conditional debit of
the user (`balance >= amount` and the key still there), settle by the claim of the
reservation (`DELETE … RETURNING`). When that row is not there the statement changes nothing
and the caller falls back to the full transaction (`store/reservations.py`), which decides.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, text

from tollway.store.reservations import OpenReservation, entry_id

# The debit re-checks the key in the same statement, like `lock_payer`: how a key deleted
# through another replica is refused on its next request. Its row lock (and the re-check of
# the balance condition on the newest row version under READ COMMITTED) is the guard
# against overdrawing, as in the transaction.
_RESERVE = text(
    "WITH debited AS ("
    " UPDATE users SET balance_credits = balance_credits - CAST(:amount AS BIGINT)"
    " WHERE id = :user_id AND balance_credits >= CAST(:amount AS BIGINT)"
    " AND EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = :key_id)"
    " RETURNING id),"
    " entry AS (INSERT INTO ledger"
    " (entry_id, user_id, kind, amount_credits, request_id, created_at)"
    " SELECT :entry_id, id, 'reserve', -CAST(:amount AS BIGINT), :request_id, :now"
    " FROM debited),"
    " opened AS (INSERT INTO reservations (request_id, user_id, project_id, key_id,"
    " amount_credits, budget_windows, instance_id, created_at)"
    " SELECT :request_id, id, :project_id, :key_id, :amount, '[]', :instance_id, :now"
    " FROM debited)"
    " SELECT count(*) FROM debited"
)

# Only a reservation holding no budget window, whose hold covers the cost, is claimed here
# (windows need their own updates; usage beyond the hold is charged from the balance or
# recorded as a shortfall): any other is left for the transaction.
_CLAIM_AND_CLOSE = (
    "WITH claimed AS ("
    " DELETE FROM reservations WHERE request_id = :request_id AND budget_windows = '[]'"
    " AND amount_credits >= CAST(:cost AS BIGINT)"
    " RETURNING user_id, project_id, key_id, amount_credits,"
    " LEAST(CAST(:cost AS BIGINT), amount_credits) AS charge),"
    " credited AS (UPDATE users"
    " SET balance_credits = balance_credits + claimed.amount_credits - claimed.charge"
    " FROM claimed WHERE users.id = claimed.user_id),"
    " entries AS (INSERT INTO ledger"
    " (entry_id, user_id, kind, amount_credits, request_id, created_at)"
    " SELECT CAST(:release_id AS VARCHAR(80)), user_id, 'release', amount_credits,"
    " CAST(:request_id AS VARCHAR(64)), CAST(:now AS BIGINT) FROM claimed"
    " UNION ALL"
    " SELECT CAST(:charge_id AS VARCHAR(80)), user_id, 'charge', -charge,"
    " CAST(:request_id AS VARCHAR(64)), CAST(:now AS BIGINT) FROM claimed WHERE charge > 0)"
)
# Constants joined at import (S608): every value is a bound parameter.
_SETTLE_WITH_USAGE = text(
    _CLAIM_AND_CLOSE + ","  # noqa: S608
    " recorded AS (INSERT INTO usage_events (request_id, created_at, user_id, project_id,"
    " key_id, key_name, endpoint, model, provider, prompt_tokens, completion_tokens,"
    " total_tokens, cached_prompt_tokens, cache_write_tokens, reasoning_tokens, cost_credits,"
    " latency_ms, status, usage_source)"
    " SELECT :request_id, :now, user_id, project_id, key_id, :key_name, :endpoint, :model,"
    " :provider, :prompt_tokens, :completion_tokens, :total_tokens, :cached_prompt_tokens,"
    " :cache_write_tokens, :reasoning_tokens, charge, :latency_ms, :status, :usage_source"
    " FROM claimed)"
    " SELECT amount_credits, charge FROM claimed"
)
_SETTLE_RELEASING = text(_CLAIM_AND_CLOSE + " SELECT amount_credits, charge FROM claimed")  # noqa: S608


def reserve(conn: Connection, r: OpenReservation) -> bool:
    """Debit `r.amount_credits` if the balance covers it and the key `r.key_id` still
    exists, with its `reserve:` ledger row and its reservation row (which must hold no budget
    window). False: nothing was written."""
    if r.windows:
        raise ValueError("a reservation holding budget windows needs the transaction")
    params = {
        "amount": r.amount_credits,
        "user_id": r.user_id,
        "key_id": r.key_id,
        "entry_id": entry_id("reserve", r.request_id),
        "request_id": r.request_id,
        "project_id": r.project_id,
        "instance_id": r.instance_id,
        "now": r.created_at,
    }
    return int(conn.execute(_RESERVE, params).scalar_one()) == 1


def settle(
    conn: Connection,
    request_id: str,
    *,
    cost: int,
    now: int,
    usage: Mapping[str, object] | None,
) -> tuple[int, int] | None:
    """Claim the reservation and close it: give back what was reserved, charge `cost`
    (`release:` and `charge:` ledger rows, no charge row when 0), and with `usage` (the
    `usage_events` columns other than who paid and the cost) record the usage event.
    Returns (reserved, charged), or None when nothing was claimed: settled or released
    already, holding budget windows, or `cost` more than the hold."""
    params: dict[str, object] = {
        "request_id": request_id,
        "cost": cost,
        "now": now,
        "release_id": entry_id("release", request_id),
        "charge_id": entry_id("charge", request_id),
    }
    statement = _SETTLE_RELEASING
    if usage is not None:
        params.update(usage)
        statement = _SETTLE_WITH_USAGE
    row = conn.execute(statement, params).first()
    return None if row is None else (int(row[0]), int(row[1]))
