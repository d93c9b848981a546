"""The routing metadata (`include_metadata`, see docs/api.md), built from what the router
decided and did."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tollway.billing.credits import CREDITS_PER_EUR, credits_to_json_number
from tollway.gateway.routing import SCORING, ModelPlan
from tollway.providers.pricing import Pricing
from tollway.providers.registry import ResolvedEndpoint
from tollway.providers.usage import TokenUsage


@dataclass(slots=True)
class Trace:
    """What happened to each candidate; statuses default to ``not_attempted``."""

    preference: str
    applied_filters: list[str]
    plans: list[ModelPlan] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # endpoint key → success | failed
    errors: dict[str, str] = field(default_factory=dict)
    tried_models: list[str] = field(default_factory=list)
    # Every upstream call in order: (endpoint, error or None when it served).
    attempts: list[tuple[ResolvedEndpoint, str | None]] = field(default_factory=list)

    def failed(self, endpoint: ResolvedEndpoint, error: str) -> None:
        self.status[endpoint.key] = "failed"
        self.errors[endpoint.key] = error
        self.attempts.append((endpoint, error))

    def succeeded(self, endpoint: ResolvedEndpoint) -> None:
        self.status[endpoint.key] = "success"
        self.attempts.append((endpoint, None))


def _eur(amount: Decimal) -> float:
    return float(amount / CREDITS_PER_EUR)


def build_metadata(
    trace: Trace,
    served: ResolvedEndpoint,
    *,
    tokens: TokenUsage,
    charged_credits: int,
    latency_ms: int,
    usage_source: str,
) -> dict[str, Any]:
    pricing: Pricing = served.pricing
    primary = trace.plans[0]
    fallback_from = primary.model.id if served.model.id != primary.model.id else None
    return {
        "routing_results": {
            "selected_provider": served.provider.slug,
            "applied_filters": trace.applied_filters,
            "cost": {
                # By token class (docs/billing.md): cached and cache-written prompt tokens
                # at their own prices.
                "prompt_cost": _eur(
                    pricing.input_token * tokens.uncached_prompt
                    + pricing.cached_input * tokens.cached_prompt
                    + pricing.cache_write * tokens.cache_write
                ),
                "completion_cost": _eur(pricing.output_token * tokens.completion),
                "total_cost": credits_to_json_number(charged_credits),
                "currency": "EUR",
            },
            "latency_ms": latency_ms,
            "usage_source": usage_source,
        },
        "routing_trace": routing_trace(trace),
        "fallback_from": fallback_from,
        "fallback_chain": trace.tried_models,
        "model_used": served.model.id,
    }


def routing_summary(trace: Trace) -> dict[str, Any]:
    """The routing of a request as the request log's detail view shows it (served or not)."""
    return {
        "preference": trace.preference,
        "applied_filters": list(trace.applied_filters),
        "routing_trace": routing_trace(trace),
        "fallback_chain": list(trace.tried_models),
    }


def routing_trace(trace: Trace) -> dict[str, Any]:
    filtered: list[dict[str, Any]] = []
    scored: list[dict[str, Any]] = []
    initial: list[str] = []
    multi = len(trace.plans) > 1
    for plan in trace.plans:
        initial += [f"{plan.model.id}@{slug}" if multi else slug for slug in plan.initial]
        filtered += [dict(f, model=plan.model.id) for f in plan.filtered]
        for candidate in plan.ranked:
            entry: dict[str, Any] = {
                "provider": candidate.endpoint.provider.slug,
                "model": plan.model.id,
                "score": candidate.score,
                "scoring_context": candidate.context,
                "status": trace.status.get(candidate.endpoint.key, "not_attempted"),
            }
            if candidate.endpoint.key in trace.errors:
                entry["error"] = trace.errors[candidate.endpoint.key]
            scored.append(entry)
    return {
        "initial_candidates": initial,
        "filtered_out_candidates": filtered,
        "scored_candidates": scored,
        "scoring_function": {"function": SCORING[trace.preference], "sort": "ascending"},
    }
