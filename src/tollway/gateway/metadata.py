"""The routing metadata (`include_metadata`, see docs/api.md), built from what the router
decided and did."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tollway.billing.credits import CREDITS_PER_EUR, credits_to_json_number
from tollway.gateway.routing import SCORING, ModelPlan
from tollway.observe.record import Filtered, Routing, Scored
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
        "routing_trace": summarize(trace).trace_json(),
        "fallback_from": fallback_from,
        "fallback_chain": trace.tried_models,
        "model_used": served.model.id,
    }


def summarize(trace: Trace) -> Routing:
    """The routing of a request as plain immutable data (served or not): what the request
    log stores and `include_metadata` shows, holding nothing of the trace itself."""
    filtered: list[Filtered] = []
    scored: list[Scored] = []
    initial: list[str] = []
    multi = len(trace.plans) > 1
    for plan in trace.plans:
        model = plan.model.id
        initial += [f"{model}@{slug}" if multi else slug for slug in plan.initial]
        filtered += plan.filtered
        for candidate in plan.ranked:
            key = candidate.endpoint.key
            scored.append(
                Scored(
                    candidate.endpoint.provider.slug,
                    model,
                    candidate.score,
                    candidate.context,
                    trace.status.get(key, "not_attempted"),
                    trace.errors.get(key),
                )
            )
    return Routing(
        preference=trace.preference,
        scoring_function=SCORING[trace.preference],
        applied_filters=tuple(trace.applied_filters),
        initial=tuple(initial),
        filtered=tuple(filtered),
        scored=tuple(scored),
        tried_models=tuple(trace.tried_models),
    )
