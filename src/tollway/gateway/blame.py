"""Whose fault is a failed attempt: the provider's (it counts in the circuit every project
shares) or possibly the request's own (it counts in the project's own circuit only, so one
tenant cannot take a model down for the others; docs/gateway.md, "Circuit breaker")."""

from __future__ import annotations

from tollway.billing.records import Reservation
from tollway.gateway.health import HealthBook
from tollway.gateway.request import InferenceRequest
from tollway.providers.registry import ResolvedEndpoint
from tollway.providers.upstream_errors import UpstreamError, UpstreamTimeout, UpstreamTooLarge

# A timeout of a request with a larger prompt (estimated tokens) may be its own doing.
SMALL_PROMPT_TOKENS = 8192


def says_unhealthy(
    exc: UpstreamError,
    request: InferenceRequest,
    endpoint: ResolvedEndpoint,
    reservation: Reservation,
    health: HealthBook,
) -> bool:
    """Whether a retriable failure says the provider is unhealthy (it counts in the circuit
    every project shares) rather than possibly the request's own doing (it counts in the
    project's own circuit): every failure but a timeout or an answer over the size cap
    does; a timeout does only for a small request — a prompt of at most
    `SMALL_PROMPT_TOKENS` (estimated) and, unless streamed (whose timeout is the wait for
    the first byte), a completion bound the endpoint is predicted to produce in half its
    timeout."""
    if isinstance(exc, UpstreamTooLarge):
        return False  # an answer over the size cap may be what the request asked for
    if not isinstance(exc, UpstreamTimeout):
        return True
    if request.prompt_estimate > SMALL_PROMPT_TOKENS:
        return False
    if request.stream:
        return True
    per_choice = reservation.max_tokens // max(request.choices, 1)
    predicted_ms = health.predicted_latency_ms(endpoint, per_choice)
    return predicted_ms * 2 <= endpoint.provider.timeout_s * 1000
