"""Filter → rank: which endpoints of a model may serve a request, and in what order.

Scores (lower is better):
- ``cost``: expected price in credits of this request (prompt estimate * input price +
  expected completion * output price).
- ``speed``: predicted latency in ms of the expected completion, on the line fitted to every
  call the endpoint served (``gateway/health.py``; the registry's hints before any traffic).
- ``balanced``: 0.5 * cost / cheapest cost + 0.5 * latency / fastest latency, over the
  candidates left after filtering — 1.0 is an endpoint both cheapest and fastest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tollway.frozen import frozen
from tollway.gateway.health import HealthBook
from tollway.observe.record import Filtered, ScoringContext, rounded
from tollway.projects.policy import Policy
from tollway.providers.registry import Model, Registry, ResolvedEndpoint

_ZERO = Decimal(0)

SCORING = {
    "cost": "expected_cost_credits",
    "speed": "predicted_latency_ms",
    "balanced": "0.5*cost/min_cost + 0.5*latency/min_latency",
}


@frozen
class Candidate:
    endpoint: ResolvedEndpoint
    score: float
    context: ScoringContext  # plain numbers; JSON only when shown


@dataclass(slots=True)
class ModelPlan:
    model: Model
    initial: list[str]
    filtered: list[Filtered] = field(default_factory=list)
    unhealthy: list[ResolvedEndpoint] = field(default_factory=list)
    ranked: list[Candidate] = field(default_factory=list)


def plan_model(
    registry: Registry,
    policy: Policy,
    model: Model,
    *,
    prompt_estimate: int,
    max_tokens: int | None,
    health: HealthBook,
    project: str | None = None,
) -> ModelPlan:
    endpoints = registry.endpoints_of(model.id)
    plan = ModelPlan(model, [ep.provider.slug for ep in endpoints])
    allowed: list[ResolvedEndpoint] = []
    needed = prompt_estimate + (max_tokens or 0)
    for ep in endpoints:
        rejected = policy.rejects(ep)
        if rejected is None and needed > model.context_size:
            rejected = (
                "context_size",
                f"context {model.context_size} is smaller than prompt + max_tokens ({needed})",
            )
        if rejected is None and health.is_open(ep, project):
            plan.unhealthy.append(ep)
            rejected = ("health", "circuit open after repeated failures")
        if rejected is not None:
            plan.filtered.append(Filtered(ep.provider.slug, model.id, *rejected))
        else:
            allowed.append(ep)
    plan.ranked = _rank(allowed, policy.preference, prompt_estimate, max_tokens, health)
    return plan


def _rank(
    endpoints: list[ResolvedEndpoint],
    preference: str,
    prompt_estimate: int,
    max_tokens: int | None,
    health: HealthBook,
) -> list[Candidate]:
    if not endpoints:
        return []
    completion = max_tokens if max_tokens is not None else 256
    # Floats: a score orders candidates, it is never charged (rounded to 6 places below, so
    # two endpoints of equal price stay tied, in registry order).
    costs = [
        ep.input_per_token * prompt_estimate + ep.output_per_token * completion for ep in endpoints
    ]
    books = [health.of(ep) for ep in endpoints]
    latencies = [book.predicted_ms(completion) for book in books]
    min_cost = max(min(costs), 1e-9)
    min_latency = max(min(latencies), 1e-9)
    candidates = []
    for ep, book, cost, latency in zip(endpoints, books, costs, latencies, strict=True):
        if preference == "cost":
            score = cost
        elif preference == "speed":
            score = latency
        else:
            score = 0.5 * max(cost, 1e-9) / min_cost + 0.5 * latency / min_latency
        context = ScoringContext(
            cost,
            latency,
            book.ttft_ms,
            book.ms_per_token,
            book.samples,
            book.breaker.consecutive_failures,
        )
        candidates.append(Candidate(ep, rounded(score, 1e6), context))
    # Stable sort: ties keep registry order.
    candidates.sort(key=lambda c: c.score)
    return candidates


def worst_prices(plans: list[ModelPlan]) -> tuple[Decimal, Decimal]:
    """The highest prompt-token (whatever its class) and output price any candidate may be
    charged at: the reservation stays an upper bound of the charge by token class."""
    inputs = [c.endpoint.highest_prompt_price for p in plans for c in p.ranked]
    outputs = [c.endpoint.endpoint.pricing.output_token for p in plans for c in p.ranked]
    return (max(inputs, default=_ZERO), max(outputs, default=_ZERO))
