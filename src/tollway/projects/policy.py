"""The routing policy a request runs under: the project's configuration merged with the
request's own router fields (docs/gateway.md), and the filters it applies to endpoints."""

from __future__ import annotations

from dataclasses import field, replace
from typing import Any, Final

from tollway.frozen import frozen
from tollway.projects.config import InferenceConfig, ProjectConfig
from tollway.providers.registry import ResolvedEndpoint

ROUTER_FIELDS = (
    "preference",
    "allowed_providers",
    "eu_native",
    "allow_quantization",
    "allow_zero_data_retention",
    "enable_model_fallback",
    "include_metadata",
)


@frozen
class Policy:
    preference: str = "balanced"
    allowed_providers: frozenset[str] | None = None
    blacklisted_models: frozenset[str] = frozenset()
    eu_native: bool = False
    allow_quantization: bool = True
    zero_data_retention_only: bool = False
    enable_model_fallback: bool = True
    include_metadata: bool = False
    applied_filters: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, config: InferenceConfig) -> Policy:
        return cls(
            preference=config.preference,
            allowed_providers=(
                frozenset(config.allowed_providers)
                if config.allowed_providers is not None
                else None
            ),
            blacklisted_models=frozenset(config.blacklisted_models),
            eu_native=config.eu_native,
            allow_quantization=config.allow_quantization,
            zero_data_retention_only=config.allow_zero_data_retention,
            enable_model_fallback=config.enable_model_fallback,
            include_metadata=config.include_metadata,
        )

    def rejects(self, endpoint: ResolvedEndpoint) -> tuple[str, str] | None:
        """``(filter, reason)`` when the policy excludes the endpoint, else None."""
        model_id, provider = endpoint.model.id, endpoint.provider
        if model_id in self.blacklisted_models:
            return "blacklisted_models", f"model {model_id} is blacklisted"
        if self.allowed_providers is not None and provider.slug not in self.allowed_providers:
            return "allowed_providers", f"provider {provider.slug} is not allowed"
        if self.eu_native and not provider.eu_native:
            return "eu_native", f"provider {provider.slug} is not EU-native"
        quantization = endpoint.endpoint.quantization
        if not self.allow_quantization and quantization:
            return "allow_quantization", f"endpoint is quantized ({quantization})"
        if self.zero_data_retention_only and not provider.zero_data_retention:
            return (
                "allow_zero_data_retention",
                f"provider {provider.slug} does not guarantee zero data retention",
            )
        return None


# The policy of a project without an active configuration (immutable, built once).
_DEFAULT: Final = Policy.from_config(InferenceConfig())


class RouterFieldError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name


def parse_router_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The router fields present in a request body, type-checked (400 names the field)."""
    found: dict[str, Any] = {}
    for name in ROUTER_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name == "preference":
            if value not in ("speed", "cost", "balanced"):
                raise RouterFieldError(name, "preference must be one of speed, cost, balanced")
        elif name == "allowed_providers":
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise RouterFieldError(name, "allowed_providers must be a list of strings")
        elif not isinstance(value, bool):
            raise RouterFieldError(name, f"{name} must be a boolean")
        found[name] = value
    return found


def effective_policy(config: ProjectConfig | None, request_fields: dict[str, Any]) -> Policy:
    """Merge the project's configuration with a request's router fields.

    Inactive (or missing) configuration: defaults plus the request's fields.
    ``allow_overwrite``: the request's fields replace the project's.
    Otherwise the request may only tighten; what it tried to loosen is recorded as ignored.
    """
    if config is None or not config.active:
        if not request_fields:
            return _DEFAULT
        return _overwrite(_DEFAULT, request_fields, "project configuration inactive")
    policy = Policy.from_config(config.inference_config)
    if not request_fields:
        return policy
    if config.allow_overwrite:
        return _overwrite(policy, request_fields, "allow_overwrite")
    return _tighten(policy, request_fields)


def _overwrite(policy: Policy, fields: dict[str, Any], why: str) -> Policy:
    updates: dict[str, Any] = {}
    notes = [f"request router fields applied ({why})"] if fields else []
    for name, value in fields.items():
        if name == "allowed_providers":
            updates[name] = frozenset(value) if value is not None else None
        elif name == "allow_zero_data_retention":
            updates["zero_data_retention_only"] = value
        else:
            updates[name] = value
    return _replace(policy, updates, notes)


def _tighten(policy: Policy, fields: dict[str, Any]) -> Policy:
    updates: dict[str, Any] = {}
    notes: list[str] = []

    def ignored(name: str, why: str) -> None:
        notes.append(f"ignored request field {name}: {why}")

    for name, value in fields.items():
        if name == "preference":
            if value != policy.preference:
                ignored(name, "allow_overwrite is false")
        elif name == "include_metadata":
            updates[name] = value  # presentation only; not a policy loosening
        elif name == "allowed_providers":
            if value is None:
                if policy.allowed_providers is not None:
                    ignored(name, "would loosen the project's allowed providers")
                continue
            requested = frozenset(value)
            if policy.allowed_providers is None or requested <= policy.allowed_providers:
                updates[name] = requested
                notes.append(f"request narrowed allowed_providers to {sorted(requested)}")
            else:
                outside = sorted(requested - policy.allowed_providers)
                narrowed = requested & policy.allowed_providers
                if narrowed:
                    updates[name] = narrowed
                ignored(name, f"providers {outside} are outside the project's policy")
        elif name == "eu_native":
            _flag(updates, notes, name, "eu_native", value, policy.eu_native, tighter=True)
        elif name == "allow_quantization":
            _flag(updates, notes, name, name, value, policy.allow_quantization, tighter=False)
        elif name == "allow_zero_data_retention":
            _flag(
                updates,
                notes,
                name,
                "zero_data_retention_only",
                value,
                policy.zero_data_retention_only,
                tighter=True,
            )
        elif name == "enable_model_fallback":
            _flag(updates, notes, name, name, value, policy.enable_model_fallback, tighter=False)
    return _replace(policy, updates, notes)


def _flag(
    updates: dict[str, Any],
    notes: list[str],
    name: str,
    attr: str,
    value: bool,
    current: bool,
    *,
    tighter: bool,
) -> None:
    """A boolean field may move only towards ``tighter``."""
    if value == current:
        return
    if value == tighter:
        updates[attr] = value
        notes.append(f"request tightened {name} to {str(value).lower()}")
    else:
        notes.append(f"ignored request field {name}: would loosen the project's policy")


def _replace(policy: Policy, updates: dict[str, Any], notes: list[str]) -> Policy:
    return replace(policy, **updates, applied_filters=(*policy.applied_filters, *notes))
