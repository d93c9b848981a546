"""The project configuration (docs/api.md): its wire models and defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Preference = Literal["speed", "cost", "balanced"]
SCHEMA_VERSION = "v1"


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    allowed_providers: list[str] | None = None
    blacklisted_models: list[str] = []
    eu_native: bool = False
    include_metadata: bool = False
    preference: Preference = "balanced"
    allow_quantization: bool = True
    allow_zero_data_retention: bool = False
    enable_model_fallback: bool = True


class InferenceConfigPatch(BaseModel):
    """A PUT's ``inference_config``: a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    allowed_providers: list[str] | None = None
    blacklisted_models: list[str] | None = None
    eu_native: bool | None = None
    include_metadata: bool | None = None
    preference: Preference | None = None
    allow_quantization: bool | None = None
    allow_zero_data_retention: bool | None = None
    enable_model_fallback: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        # FastAPI validates bodies with `from_attributes`: any object (a JSON fraction, read
        # as a Decimal) would otherwise pass as a patch of nothing, every field left out.
        if not isinstance(value, dict | InferenceConfigPatch):
            raise ValueError("must be a JSON object")
        return value

    def apply_to(self, current: InferenceConfig) -> InferenceConfig:
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        # Only allowed_providers may be set to null (= every provider); others keep their value.
        for name in list(changes):
            if changes[name] is None and name != "allowed_providers":
                del changes[name]
        return current.model_copy(update=changes)


class ProjectConfigUpdate(BaseModel):
    """The PUT body: the GET object without ``_id``/``project_id``; timestamps are ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    active: bool
    allow_overwrite: bool | None = None
    inference_config: InferenceConfigPatch | None = None
    # Echoed back by clients that PUT what they GOT; accepted and ignored.
    id_: Any = Field(default=None, alias="_id")
    project_id: Any = None
    schema_version: Literal["v1"] | None = None
    created_at: Any = None  # server-owned: accepted whatever its type, and ignored
    updated_at: Any = None


class ProjectConfig(BaseModel):
    """A project configuration as the domain sees it."""

    model_config = ConfigDict(frozen=True)

    id: str
    project_id: str
    active: bool
    allow_overwrite: bool
    inference_config: InferenceConfig
    schema_version: str
    created_at_ms: int
    updated_at_ms: int
