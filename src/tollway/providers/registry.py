"""The provider registry: which models exist, where they run, what they cost.

Loaded once from YAML at start-up, validated with errors that name file, entry and field,
then frozen; the hot path only reads lookups precomputed here. An `optional` provider whose
secret is missing is left out with a warning (`Registry.warnings`), and so are the models it
alone served (see docs/providers.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
)

from tollway.errors import ConfigError
from tollway.providers.pricing import Pricing
from tollway.providers.registry_problems import (
    Location,
    Report,
    file_order,
    is_follow_on,
    problem,
    yaml_problem,
)

DEMO_REGISTRY = Path(__file__).with_name("demo.yaml")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")]


class RegistryError(ConfigError):
    """An unusable registry file; the message names file, entry and field of each problem."""

    def __init__(self, problems: list[str]) -> None:
        # One problem per line: printed as is, each line names its file, entry and field.
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpeedHints(_Frozen):
    """Expected speed of a provider, used to rank by speed before live measurements exist."""

    ttft_ms: float = Field(default=500.0, gt=0)
    tokens_per_second: float = Field(default=50.0, gt=0)


class Provider(_Frozen):
    slug: Slug
    name: str = Field(min_length=1)
    base_url: str
    api_key_env: str | None = None
    # Optional: when the secret in `api_key_env` is missing, leave the provider out (with a
    # warning) instead of refusing the whole registry.
    optional: bool = False
    eu_native: bool = False
    zero_data_retention: bool = False
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    hints: SpeedHints = SpeedHints()
    # Read from the environment at load time; the secret never lives in the file.
    _api_key: str | None = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def api_key(self) -> str | None:
        return self._api_key


class Endpoint(_Frozen):
    provider: Slug
    upstream_model: str = Field(min_length=1)
    pricing: Pricing
    quantization: str | None = None


class Model(_Frozen):
    id: str = Field(min_length=1)
    description: str = ""
    tags: tuple[str, ...] = ()
    context_size: int = Field(gt=0)
    fallback: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = Field(min_length=1)
    kind: Literal["chat", "embedding"] = "chat"
    created: int = Field(default=0, ge=0)


class RegistryDocument(_Frozen):
    """The YAML file as written, before cross-references are checked."""

    providers: tuple[Provider, ...] = Field(min_length=1)
    models: tuple[Model, ...] = Field(min_length=1)


@dataclass(frozen=True, eq=False, slots=True)
class ResolvedEndpoint:
    """One (model, provider) candidate with everything routing needs, built once at load."""

    model: Model
    provider: Provider
    endpoint: Endpoint
    key: str  # "model-id@provider-slug", stable across restarts, for health and metrics
    # Read on every request's ranking and reservation, so worked out once here: the prices
    # as floats (ranking only, never money) and the most a prompt token may cost.
    input_per_token: float = field(init=False)
    output_per_token: float = field(init=False)
    highest_prompt_price: Decimal = field(init=False)

    def __post_init__(self) -> None:
        pricing = self.endpoint.pricing
        object.__setattr__(self, "input_per_token", float(pricing.input_token))
        object.__setattr__(self, "output_per_token", float(pricing.output_token))
        object.__setattr__(self, "highest_prompt_price", pricing.highest_prompt_price)

    @property
    def pricing(self) -> Pricing:
        return self.endpoint.pricing

    @property
    def upstream_model(self) -> str:
        return self.endpoint.upstream_model

    @property
    def quantized(self) -> bool:
        return self.endpoint.quantization is not None


def _price_rank(pricing: Pricing) -> tuple[Decimal, Decimal]:
    return (pricing.input_token + pricing.output_token, pricing.input_token)


class Registry:
    """Immutable lookups over a validated registry document."""

    __slots__ = (
        "_cheapest",
        "_endpoints",
        "_models",
        "_providers",
        "skipped",
        "source",
        "warnings",
    )

    def __init__(
        self,
        document: RegistryDocument,
        source: str,
        *,
        skipped: Mapping[str, str] | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        # Optional providers left out (slug → why), and what the loader warns about.
        self.skipped: Mapping[str, str] = MappingProxyType(dict(skipped or {}))
        self.warnings = warnings
        self._providers = MappingProxyType({p.slug: p for p in document.providers})
        self._models = MappingProxyType({m.id: m for m in document.models})
        self._endpoints = MappingProxyType(
            {
                model.id: tuple(
                    ResolvedEndpoint(
                        model, self._providers[e.provider], e, f"{model.id}@{e.provider}"
                    )
                    for e in model.endpoints
                )
                for model in document.models
            }
        )
        # "Cheapest" = lowest input + output price, ties broken by the input price.
        self._cheapest = MappingProxyType(
            {
                model.id: min((e.pricing for e in model.endpoints), key=_price_rank)
                for model in document.models
            }
        )

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def models(self) -> Mapping[str, Model]:
        """Every model by id, in file order."""
        return self._models

    def model(self, model_id: str) -> Model | None:
        return self._models.get(model_id)

    def provider(self, slug: str) -> Provider | None:
        return self._providers.get(slug)

    def endpoints_of(self, model_id: str) -> tuple[ResolvedEndpoint, ...]:
        """The model's endpoints in file order; empty for an unknown model."""
        return self._endpoints.get(model_id, ())

    def cheapest_pricing(self, model_id: str) -> Pricing | None:
        return self._cheapest.get(model_id)


def load_registry(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Registry:
    """Read, expand `${VAR:-default}`, validate and freeze a registry; None = the demo."""
    env = os.environ if environ is None else environ
    file = DEMO_REGISTRY if path is None else Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryError(
            [f"{source}: cannot read provider registry: {error.strerror}"]
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RegistryError([f"{source}: invalid YAML: {yaml_problem(error)}"]) from None
    if raw is None:
        raise RegistryError([f"{source}: the provider registry is empty"])
    problems: list[str] = []
    raw = _expand(raw, env, (), lambda loc, msg: problems.append(problem(source, raw, loc, msg)))
    if problems:
        raise RegistryError(problems)
    try:
        document = RegistryDocument.model_validate(raw)
    except ValidationError as error:
        raise RegistryError(
            [
                problem(source, raw, tuple(e["loc"]), e["msg"])
                for e in error.errors()
                if not is_follow_on(e["type"], tuple(e["loc"]), raw)
            ]
        ) from None
    found = _cross_check(document)
    secrets, missing = _read_secrets(document, env)
    for i, provider in enumerate(document.providers):
        if provider.slug in missing and not provider.optional:
            found.append((("providers", i, "api_key_env"), missing[provider.slug]))
    if found:
        found.sort(key=file_order)
        raise RegistryError([problem(source, raw, loc, msg) for loc, msg in found])
    skipped = missing  # every provider still missing its secret is optional
    document, warnings = _without(document, skipped, source)
    if not document.models:
        raise RegistryError(
            [f"{source}: no model left: every provider that serves one is optional and skipped"]
        )
    for provider in document.providers:
        provider._api_key = secrets.get(provider.slug)
    return Registry(document, source, skipped=skipped, warnings=tuple(warnings))


def _read_secrets(
    document: RegistryDocument, env: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each provider's secret from the variable its `api_key_env` names: (found, missing),
    both keyed by slug; `missing` says why."""
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for provider in document.providers:
        if provider.api_key_env is None:
            continue
        key = env.get(provider.api_key_env)
        if key:
            found[provider.slug] = key
        else:
            missing[provider.slug] = (
                f"environment variable {provider.api_key_env} is not set or empty"
            )
    return found, missing


def _without(
    document: RegistryDocument, skipped: Mapping[str, str], source: str
) -> tuple[RegistryDocument, list[str]]:
    """The document without the skipped providers, their endpoints, the models left with no
    endpoint, and fallback references to those models; one warning per thing left out."""
    if not skipped:
        return document, []
    warnings = [
        f"{source}: optional provider {slug!r} skipped: {why}" for slug, why in skipped.items()
    ]
    models: list[Model] = []
    for model in document.models:
        endpoints = tuple(e for e in model.endpoints if e.provider not in skipped)
        if endpoints:
            models.append(model.model_copy(update={"endpoints": endpoints}))
        else:
            warnings.append(
                f"{source}: model {model.id!r} dropped: its only providers were skipped"
            )
    kept = {model.id for model in models}
    for index, model in enumerate(models):
        fallback = tuple(target for target in model.fallback if target in kept)
        if fallback != model.fallback:
            dropped = ", ".join(repr(t) for t in model.fallback if t not in kept)
            warnings.append(f"{source}: model {model.id!r}: fallback to {dropped} removed")
            models[index] = model.model_copy(update={"fallback": fallback})
    providers = tuple(p for p in document.providers if p.slug not in skipped)
    updated = document.model_copy(update={"providers": providers, "models": tuple(models)})
    return updated, warnings


def _expand(value: Any, env: Mapping[str, str], loc: Location, report: Report) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string value of the document."""
    if isinstance(value, dict):
        return {key: _expand(item, env, (*loc, key), report) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, env, (*loc, i), report) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        current = env.get(name)
        if current:
            return current
        if default is not None:
            return default
        report(loc, f"environment variable {name} is not set and has no default")
        return ""

    return _ENV_REFERENCE.sub(substitute, value)


def _cross_check(document: RegistryDocument) -> list[tuple[Location, str]]:
    """References between entries, which field validation cannot see."""
    problems: list[tuple[Location, str]] = []
    slugs: dict[str, int] = {}
    for i, provider in enumerate(document.providers):
        if provider.slug in slugs:
            first = slugs[provider.slug]
            problems.append(
                (("providers", i, "slug"), f"duplicate slug, first at providers[{first}]")
            )
        slugs.setdefault(provider.slug, i)
    ids: dict[str, int] = {}
    for i, model in enumerate(document.models):
        if model.id in ids:
            problems.append(
                (("models", i, "id"), f"duplicate id, first at models[{ids[model.id]}]")
            )
        ids.setdefault(model.id, i)
    kinds = {model.id: model.kind for model in document.models}
    for i, model in enumerate(document.models):
        seen: set[str] = set()
        for j, endpoint in enumerate(model.endpoints):
            loc: Location = ("models", i, "endpoints", j, "provider")
            if endpoint.provider not in slugs:
                problems.append((loc, f"unknown provider {endpoint.provider!r}"))
            elif endpoint.provider in seen:
                problems.append((loc, f"provider {endpoint.provider!r} listed twice"))
            seen.add(endpoint.provider)
        for k, target in enumerate(model.fallback):
            loc = ("models", i, "fallback", k)
            if target == model.id:
                problems.append((loc, "a model cannot fall back to itself"))
            elif target not in kinds:
                problems.append((loc, f"unknown model {target!r}"))
            elif kinds[target] != model.kind:
                message = f"kind {kinds[target]}, but {model.id} has kind {model.kind}"
                problems.append((loc, message))
    return problems
