"""Parse an inference request body once: what routing and metering need, and the body to
forward (router fields removed). Bad input is a 400 that names the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.errors import BadRequest
from tollway.jsonbody import parse_json_body
from tollway.projects.policy import ROUTER_FIELDS, RouterFieldError, parse_router_fields
from tollway.providers.tokens import count_prompt_tokens, count_tokens

# Typical tokenizers average ~4 bytes of text per token: an estimate for context checks and
# ranking. The reservation uses the byte length of the whole request body instead (no
# tokenizer makes more tokens than bytes of text), plus an allowance per media part, whose
# tokens do not follow from the bytes of its URL (docs/gateway.md, "What is reserved"). An
# upstream that reports more is charged in full as far as the balance allows, the rest
# recorded as a shortfall in the ledger (docs/billing.md).
BYTES_PER_TOKEN_ESTIMATE = 4
IMAGE_PART_TOKENS = 8192
AUDIO_PART_TOKENS = 32768
VIDEO_PART_TOKENS = 65536
OTHER_MEDIA_PART_TOKENS = 32768  # a file, or any other `*_url` part
MEDIA_PART_TOKENS = {
    "image_url": IMAGE_PART_TOKENS,
    "input_image": IMAGE_PART_TOKENS,
    "image": IMAGE_PART_TOKENS,
    "input_audio": AUDIO_PART_TOKENS,
    "audio_url": AUDIO_PART_TOKENS,
    "audio": AUDIO_PART_TOKENS,
    "video_url": VIDEO_PART_TOKENS,
    "input_video": VIDEO_PART_TOKENS,
    "video": VIDEO_PART_TOKENS,
    "file": OTHER_MEDIA_PART_TOKENS,
    "input_file": OTHER_MEDIA_PART_TOKENS,
}


def media_allowance(part_type: object) -> int:
    """The tokens reserved for one content part beyond its bytes: 0 for text."""
    if not isinstance(part_type, str):
        return 0
    allowance = MEDIA_PART_TOKENS.get(part_type)
    if allowance is not None:
        return allowance
    return OTHER_MEDIA_PART_TOKENS if part_type.endswith("_url") else 0


# Every field an OpenAI-compatible server may read as the completion bound, some ahead of
# `max_tokens` (vLLM and SGLang read `max_completion_tokens` first, llama.cpp `n_predict`;
# `max_new_tokens` is the Hugging Face name). Each one a client sends is a bound: the smallest
# is reserved, and the upstream receives exactly that, as `max_tokens` alone — the one field
# every such server honours (Mistral refuses `max_completion_tokens`).
COMPLETION_BOUND_FIELDS = ("max_completion_tokens", "max_tokens", "n_predict", "max_new_tokens")


@dataclass(slots=True)
class InferenceRequest:
    kind: str  # "chat.completions" | "embeddings"
    model: str
    body: dict[str, Any]  # forwarded upstream (router fields stripped)
    router_fields: dict[str, Any]
    prompt_upper_bound: int  # the body's bytes + `media_allowance` of each part
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    choices: int = 1  # the request's `n` (or `best_of`, if larger): each may use max_tokens
    dialect_endpoint: str | None = None  # the public endpoint when not `kind` ("messages")

    @property
    def endpoint(self) -> str:
        """What the client called, for usage rows, metrics and logs."""
        return self.dialect_endpoint or self.kind

    @property
    def prompt_estimate(self) -> int:
        return max(1, self.prompt_upper_bound // BYTES_PER_TOKEN_ESTIMATE)


def _load(raw: bytes) -> dict[str, Any]:
    body = parse_json_body(raw)  # strict: a lone surrogate is a 400 naming its field
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: required, a non-empty string", param="model")
    return model


def _router_fields(body: dict[str, Any]) -> dict[str, Any]:
    try:
        fields = parse_router_fields(body)
    except RouterFieldError as exc:
        raise BadRequest(str(exc), param=exc.field_name) from exc
    for name in ROUTER_FIELDS:
        body.pop(name, None)
    return fields


def parse_chat(raw: bytes) -> InferenceRequest:
    body = _load(raw)
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: required, a non-empty list", param="messages")
    if not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: every message must be an object", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options: must be an object", param="stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    max_tokens = _completion_bound(body)
    choices = max(_choices(body, "n"), _choices(body, "best_of"))
    router_fields = _router_fields(body)
    media_tokens = sum(
        media_allowance(part.get("type"))
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict)
    )
    return InferenceRequest(
        kind="chat.completions",
        model=model,
        body=body,
        router_fields=router_fields,
        prompt_upper_bound=len(raw) + media_tokens,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        choices=choices,
    )


def _completion_bound(body: dict[str, Any]) -> int | None:
    """The smallest bound among COMPLETION_BOUND_FIELDS, left in the body as `max_tokens`."""
    bound: int | None = None
    for name in COMPLETION_BOUND_FIELDS:
        value = body.pop(name, None)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"{name}: must be a positive integer", param=name)
        bound = value if bound is None else min(bound, value)
    if bound is not None:
        body["max_tokens"] = bound
    return bound


def _choices(body: dict[str, Any], name: str) -> int:
    """`n`, or vLLM's `best_of` (sequences generated, of which `n` are returned)."""
    value = body.get(name)
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 128:
        raise BadRequest(f"{name}: must be an integer from 1 to 128", param=name)
    return value


def parse_embeddings(raw: bytes) -> InferenceRequest:
    body = _load(raw)
    model = _model(body)
    inputs = body.get("input")
    valid = isinstance(inputs, str) or (
        isinstance(inputs, list)
        and inputs
        and (
            all(isinstance(i, str) for i in inputs)
            or all(isinstance(i, int) for i in inputs)
            or all(isinstance(i, list) for i in inputs)
        )
    )
    if not valid:
        raise BadRequest(
            "input: required, a string or a non-empty list of strings or token ids", param="input"
        )
    router_fields = _router_fields(body)
    return InferenceRequest("embeddings", model, body, router_fields, len(raw))


def counted_prompt_tokens(request: InferenceRequest) -> int:
    """Prompt tokens by the gateway's own rule, for upstreams that report no usage."""
    if request.kind == "embeddings":
        inputs = request.body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return sum(
            count_tokens(i) if isinstance(i, str) else len(i) if isinstance(i, list) else 1
            for i in items
        )
    return count_prompt_tokens(request.body.get("messages") or [])
