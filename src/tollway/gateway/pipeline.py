"""One inference request: authorize → policy → route → reserve → call (with fallback) → meter.

The caller (the HTTP edge) has authenticated the key; everything after is here, framework-free.
Non-streaming calls settle before answering; streams settle when they end, however they end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from tollway.billing.records import Payer, Reservation, ReserveRequest
from tollway.errors import (
    BadRequest,
    InsufficientBalance,
    NotFound,
    TollwayError,
    Unauthorized,
    UpstreamRejected,
    excerpt,
)
from tollway.gateway.auth import Authenticator, Principal
from tollway.gateway.blame import says_unhealthy
from tollway.gateway.config_cache import ConfigCache
from tollway.gateway.health import HealthBook
from tollway.gateway.metadata import Trace, build_metadata
from tollway.gateway.observed import Attempt, ObservedMeter
from tollway.gateway.ratelimit import RateLimiter
from tollway.gateway.request import InferenceRequest
from tollway.gateway.routing import ModelPlan, plan_model, worst_prices
from tollway.gateway.settlement import Call, Settler, usage_or_counted
from tollway.gateway.stages import (
    Planned,
    Reserved,
    Served,
    all_failed,
    completion_bound,
    no_candidate,
)
from tollway.gateway.streaming import StreamRelay
from tollway.gateway.tally import Tally
from tollway.observe.metrics import Metrics
from tollway.observe.tracing import Tracer
from tollway.projects.policy import Policy, effective_policy
from tollway.providers.registry import Model, Registry, ResolvedEndpoint
from tollway.providers.tokens import answer_tokens
from tollway.providers.upstream import UpstreamClient
from tollway.providers.upstream_errors import UpstreamError, UpstreamStatusError
from tollway.tasks import TaskTracker

T = TypeVar("T")

PATHS = {"chat.completions": "/chat/completions", "embeddings": "/embeddings"}


class Gateway:
    def __init__(
        self,
        *,
        registry: Registry,
        configs: ConfigCache,
        meter: ObservedMeter,
        upstream: UpstreamClient,
        health: HealthBook,
        auth: Authenticator,
        tasks: TaskTracker,
        metrics: Metrics,
        tracer: Tracer,
        limiter: RateLimiter,
    ) -> None:
        self.registry = registry
        self.configs = configs
        self.meter = meter
        self.upstream = upstream
        self.health = health
        self.auth = auth
        self.tasks = tasks
        self.metrics = metrics
        self.tracer = tracer
        self.limiter = limiter
        self.settler = Settler(meter=meter, tasks=tasks, metrics=metrics, health=health)

    async def handle(self, principal: Principal, request: InferenceRequest, tally: Tally) -> Served:
        """Serve one request; `tally` (its id, and what it did) is filled in on the way."""
        try:
            return await self._handle(principal, request, tally)
        except TollwayError as exc:
            # Only registry ids become labels: clients could invent unlimited model names.
            model = request.model if request.model in self.registry.models else "unknown"
            self.metrics.refused(endpoint=request.endpoint, model=model, status=str(exc.status))
            raise

    async def _handle(
        self, principal: Principal, request: InferenceRequest, tally: Tally
    ) -> Served:
        started = time.perf_counter()
        planned = await self._plan(principal, request)
        tally.trace = planned.trace
        reserved = await self._admit_and_reserve(principal, request, planned, tally.request_id)
        call = Call(
            principal,
            request,
            planned.policy,
            planned.trace,
            reserved.reservation,
            started,
            tally,
            reserved.max_tokens,
        )
        try:
            if request.stream:
                return Served(await self._open_stream(call), reserved.headers)
            return Served(await self._complete(call), reserved.headers)
        except BaseException:
            # Nothing was served (a relay, once returned, settles by itself).
            await self.settler.settle(reserved.reservation, None)
            raise

    # -- the stages before serving: planned → reserved ------------------------------------

    async def _plan(self, principal: Principal, request: InferenceRequest) -> Planned:
        """The policy the request runs under and its ranked candidates."""
        with self.tracer.span("tollway.policy", stream=request.stream) as span:
            model = self._model(request)
            span.set("tollway.model", model.id)
            config = await self.configs.get(principal.project_id)
            policy = effective_policy(config, request.router_fields)
        with self.tracer.span("tollway.route") as span:
            plans = self._plans(model, policy, request, principal.project_id)
            span.set("tollway.candidates", sum(len(p.ranked) for p in plans))
        return Planned(
            policy=policy,
            trace=Trace(policy.preference, list(policy.applied_filters), plans),
            completion_bound=completion_bound(request, plans),
        )

    async def _admit_and_reserve(
        self, principal: Principal, request: InferenceRequest, planned: Planned, request_id: str
    ) -> Reserved:
        """Past the rate limits, the worst-case cost reserved; the completion bound lowered
        to fit the balance when it must be (402 when not even one token per choice fits)."""
        # Tokens per minute count an estimate (prompt bytes / 4 + the completion bound), as
        # OpenAI does: a rate limit is about capacity; money uses the strict bound below.
        headers = await self.limiter.admit(
            principal, request.prompt_estimate + planned.completion_bound
        )
        reservation = await self._reserve(
            principal, request, planned.trace.plans, planned.completion_bound, request_id
        )
        self.tracer.current().set("tollway.request_id", reservation.request_id)
        if not reservation.lowered:
            return Reserved(reservation, headers, None)
        per_choice = reservation.max_tokens // request.choices
        if per_choice < 1:
            await self.settler.settle(reservation, None)
            raise InsufficientBalance("insufficient balance")
        planned.trace.applied_filters.append(
            f"max_tokens lowered to {per_choice} to fit the balance"
        )
        return Reserved(reservation, headers, per_choice)

    # -- policy and routing -------------------------------------------------------------

    def _model(self, request: InferenceRequest) -> Model:
        model = self.registry.model(request.model)
        if model is None:
            raise NotFound(
                f"model '{excerpt(request.model)}' not found", param="model", code="model_not_found"
            )
        wanted = "embedding" if request.kind == "embeddings" else "chat"
        if model.kind != wanted:
            raise BadRequest(
                f"model '{model.id}' is a {model.kind} model; use the matching endpoint",
                param="model",
            )
        return model

    def _plans(
        self, model: Model, policy: Policy, request: InferenceRequest, project: str
    ) -> list[ModelPlan]:
        chain = [model]
        if policy.enable_model_fallback:
            chain += [m for m in (self.registry.model(i) for i in model.fallback) if m is not None]
        plans = [
            plan_model(
                self.registry,
                policy,
                m,
                prompt_estimate=request.prompt_estimate,
                max_tokens=request.max_tokens,
                health=self.health,
                project=project,
            )
            for m in chain
        ]
        if not any(p.ranked for p in plans):
            wait = min(
                (self.health.reopens_in(ep, project) for p in plans for ep in p.unhealthy),
                default=0.0,
            )
            raise no_candidate(plans, math.ceil(wait))
        return plans

    async def _reserve(
        self,
        principal: Principal,
        request: InferenceRequest,
        plans: list[ModelPlan],
        completion_bound: int,
        request_id: str,
    ) -> Reservation:
        input_price, output_price = worst_prices(plans)
        payer = Payer(
            request_id=request_id,
            user_id=principal.user_id,
            project_id=principal.project_id,
            key_id=principal.key_id,
            key_name=principal.key_name,
        )
        try:
            return await self.meter.reserve(
                ReserveRequest(
                    payer=payer,
                    input_price=input_price,
                    output_price=output_price,
                    prompt_tokens=request.prompt_upper_bound,
                    max_tokens=completion_bound,
                )
            )
        except Unauthorized:
            self.auth.forget(principal.key_id)  # deleted through another replica
            raise

    def _candidates(self, call: Call) -> list[tuple[ModelPlan, ResolvedEndpoint]]:
        return [(plan, c.endpoint) for plan in call.trace.plans for c in plan.ranked]

    def _upstream_body(self, call: Call, endpoint: ResolvedEndpoint) -> bytes:
        """The body for `endpoint`: the client's, with the upstream's model name (and the
        lowered completion bound, usage asked of a stream) — a shallow copy, the parsed
        request is left as it was parsed."""
        body = {**call.request.body, "model": endpoint.upstream_model}
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        if call.request.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body)

    def _note_model(self, call: Call, plan: ModelPlan) -> None:
        if not call.trace.tried_models or call.trace.tried_models[-1] != plan.model.id:
            call.trace.tried_models.append(plan.model.id)

    def _attempt(self, call: Call, endpoint: ResolvedEndpoint) -> Attempt:
        return Attempt.of(
            self.metrics,
            self.tracer,
            endpoint,
            number=len(call.trace.status) + 1,
            after_failure=bool(call.trace.errors),
        )

    def _failed(self, call: Call, endpoint: ResolvedEndpoint, exc: UpstreamError) -> None:
        call.trace.failed(endpoint, exc.message)
        self.metrics.upstream_failures.labels(endpoint.provider.slug).inc()
        project = call.principal.project_id
        if exc.retriable:
            shared = says_unhealthy(exc, call.request, endpoint, call.reservation, self.health)
            self.health.record_failure(endpoint, project, shared=shared)
            return
        # The client's own mistake says nothing of the endpoint.
        self.health.release(endpoint, project)
        assert isinstance(exc, UpstreamStatusError)
        raise UpstreamRejected(exc.message, status=exc.upstream_status, body=exc.body)

    # -- serving: one candidate loop for whole answers and streams --------------------------

    async def _first_served(
        self, call: Call, send: Callable[[ResolvedEndpoint, float], Awaitable[T]]
    ) -> tuple[ResolvedEndpoint, T, float]:
        """Try the candidates in rank order until `send` (one upstream attempt, given the
        endpoint and when the attempt started) succeeds; retriable failures fall through to
        the next one. Returns the endpoint that served, what `send` returned and its start."""
        project = call.principal.project_id
        last: UpstreamError | None = None
        for plan, endpoint in self._candidates(call):
            if not self.health.admit(endpoint, project):
                continue  # its half-open trial went to another request since ranking
            self._note_model(call, plan)
            attempt_started = time.perf_counter()
            try:
                with self._attempt(call, endpoint):
                    result = await send(endpoint, attempt_started)
            except UpstreamError as exc:  # for a stream: failed or broken before its first byte
                last = exc
                self._failed(call, endpoint, exc)
                continue
            except BaseException:
                self.health.release(endpoint, project)
                raise
            call.trace.succeeded(endpoint)
            return endpoint, result, attempt_started
        raise all_failed(last)

    async def _complete(self, call: Call) -> bytes:
        path = PATHS[call.request.kind]

        async def send(endpoint: ResolvedEndpoint, _started: float) -> dict[str, Any]:
            return await self.upstream.post_json(
                endpoint.provider, path, self._upstream_body(call, endpoint)
            )

        endpoint, payload, attempt_started = await self._first_served(call, send)
        elapsed_ms = (time.perf_counter() - attempt_started) * 1000
        return await self._finish(call, endpoint, payload, elapsed_ms)

    async def _finish(
        self, call: Call, endpoint: ResolvedEndpoint, payload: dict[str, Any], elapsed_ms: float
    ) -> bytes:
        tokens, source = usage_or_counted(
            call.request, payload.get("usage"), lambda: _answer_tokens(payload)
        )
        record, charged = await self.settler.succeeded(
            call, endpoint, tokens=tokens, source=source, total_ms=elapsed_ms
        )
        payload["model"] = endpoint.model.id
        payload["provider"] = endpoint.provider.slug
        # The usage as billed, token classes in OpenAI's `*_tokens_details`.
        payload["usage"] = tokens.chat(embeddings=call.request.kind == "embeddings")
        if call.policy.include_metadata:
            payload["metadata"] = build_metadata(
                call.trace,
                endpoint,
                tokens=tokens,
                charged_credits=charged,
                latency_ms=record.latency_ms,
                usage_source=source,
            )
        return orjson.dumps(payload)

    async def _open_stream(self, call: Call) -> StreamRelay:
        async def send(endpoint: ResolvedEndpoint, started: float) -> StreamRelay:
            stream = await self.upstream.open_stream(
                endpoint.provider, "/chat/completions", self._upstream_body(call, endpoint)
            )
            relay = StreamRelay(self.settler, call, endpoint, stream, started)
            await relay.prime()
            return relay

        endpoint, relay, _ = await self._first_served(call, send)
        self.health.record_alive(endpoint, call.principal.project_id)
        return relay


def _answer_tokens(payload: dict[str, Any]) -> int:
    """The completion tokens of a whole answer, counted by the gateway."""
    return sum(
        answer_tokens(choice.get("message"))
        for choice in payload.get("choices") or []
        if isinstance(choice, dict)
    )
