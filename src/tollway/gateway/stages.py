"""The results the request path's stages hand on, each immutable: `Planned` (policy and
ranked candidates) → `Reserved` (admitted by the rate limits, the cost held) → `Served` (the
answer or the stream's relay); and what stops the path when no candidate is left or every
one failed."""

from __future__ import annotations

from tollway.billing.records import Reservation
from tollway.errors import BadRequest, NoHealthyCandidate, UpstreamFailure
from tollway.frozen import frozen
from tollway.gateway.metadata import Trace
from tollway.gateway.request import InferenceRequest
from tollway.gateway.routing import ModelPlan
from tollway.gateway.streaming import StreamRelay
from tollway.projects.policy import Policy
from tollway.providers.upstream_errors import UpstreamError


@frozen
class Planned:
    """Stage result: the policy the request runs under, its candidates ranked (in the
    trace, which records what is tried) and the completion bound to reserve and rate-limit."""

    policy: Policy
    trace: Trace
    completion_bound: int


@frozen
class Reserved:
    """Stage result: admitted by the rate limits (their headers) and the cost reserved;
    `max_tokens` the per-choice bound lowered to fit the balance (None: as asked)."""

    reservation: Reservation
    headers: dict[str, str]
    max_tokens: int | None


@frozen
class Served:
    """What the edge sends: the answer (bytes, or a stream relay) and extra headers."""

    result: bytes | StreamRelay
    headers: dict[str, str]


def completion_bound(request: InferenceRequest, plans: list[ModelPlan]) -> int:
    """The most completion tokens the request may produce (what is reserved and rate-limited)."""
    if request.kind == "embeddings":
        return 0
    # Without max_tokens a choice may run to the end of the model's context.
    per_choice = request.max_tokens or max(p.model.context_size for p in plans if p.ranked)
    return per_choice * request.choices


def no_candidate(plans: list[ModelPlan], retry_after_s: int) -> Exception:
    reasons = [
        f"{f.model}@{f.provider}: {f.filter_failed} ({f.reason})"
        for plan in plans
        for f in plan.filtered
    ]
    only_unhealthy = all(
        f.filter_failed == "health" for plan in plans for f in plan.filtered
    ) and any(plan.unhealthy for plan in plans)
    if only_unhealthy:
        return NoHealthyCandidate(
            "every candidate is unhealthy (circuit open): " + "; ".join(reasons),
            retry_after_s=retry_after_s,
        )
    return BadRequest(
        "no candidate left after the policy and capability filters: " + "; ".join(reasons),
        param="model",
        code="no_candidate",
    )


def all_failed(last: UpstreamError | None) -> UpstreamFailure:
    if last is None:
        return UpstreamFailure("no candidate could be tried", status=503)
    return UpstreamFailure(
        f"every candidate failed; last error: {last.message}", status=last.status
    )
