"""Read and change a project's configuration (docs/api.md), validated against the registry."""

from __future__ import annotations

import orjson

from tollway.audit.actor import Actor
from tollway.clock import Clock
from tollway.errors import BadRequest, Forbidden, NotFound, excerpt, listing
from tollway.ids import new_id
from tollway.projects.config import (
    SCHEMA_VERSION,
    InferenceConfig,
    ProjectConfig,
    ProjectConfigUpdate,
)
from tollway.projects.policy import Policy
from tollway.providers.registry import Registry
from tollway.store import accounts, audit, configs
from tollway.store.configs import ConfigRow
from tollway.store.database import Database


def default_config_row(project_id: str, now: float) -> ConfigRow:
    now_ms = int(now * 1000)
    return ConfigRow(
        id=new_id(),
        project_id=project_id,
        active=True,
        allow_overwrite=False,
        inference_config=InferenceConfig().model_dump_json(),
        schema_version=SCHEMA_VERSION,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
    )


def config_from_row(row: ConfigRow) -> ProjectConfig:
    return ProjectConfig(
        id=row.id,
        project_id=row.project_id,
        active=row.active,
        allow_overwrite=row.allow_overwrite,
        inference_config=InferenceConfig.model_validate(orjson.loads(row.inference_config)),
        schema_version=row.schema_version,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def registry_problems(config: InferenceConfig, registry: Registry) -> list[str]:
    """Every way the configuration disagrees with the provider registry."""
    problems = [
        f"allowed_providers: unknown provider '{excerpt(slug)}'"
        for slug in dict.fromkeys(config.allowed_providers or [])
        if slug not in registry.providers
    ]
    problems += [
        f"blacklisted_models: unknown model '{excerpt(model_id)}'"
        for model_id in dict.fromkeys(config.blacklisted_models)
        if model_id not in registry.models
    ]
    if not problems and not routable_models(Policy.from_config(config), registry):
        problems.append("the policy leaves no routable model: every endpoint is filtered out")
    return problems


def routable_models(policy: Policy, registry: Registry) -> list[str]:
    return [
        model_id
        for model_id in registry.models
        if any(policy.rejects(ep) is None for ep in registry.endpoints_of(model_id))
    ]


class ProjectService:
    def __init__(self, db: Database, registry: Registry, clock: Clock) -> None:
        self._db = db
        self._registry = registry
        self._clock = clock

    async def get(self, project_id: str) -> ProjectConfig:
        config = await self.get_or_none(project_id)
        if config is None:
            raise NotFound("project configuration not found")
        return config

    async def get_or_none(self, project_id: str) -> ProjectConfig | None:
        async with self._db.read() as conn:
            row = await configs.config_of_project(conn, project_id)
        return config_from_row(row) if row else None

    async def update(
        self, *, actor: Actor, user_id: str, project_id: str, change: ProjectConfigUpdate
    ) -> None:
        async with self._db.write() as conn:
            row = await configs.config_of_project(conn, project_id)
            if row is None:
                raise NotFound("project configuration not found")
            current = config_from_row(row)
            is_admin = await accounts.role_of(conn, user_id, project_id) == "admin"
            if not is_admin:
                if not current.allow_overwrite:
                    raise Forbidden(
                        "only a project admin may change the configuration "
                        "while allow_overwrite is false"
                    )
                if (
                    change.allow_overwrite is not None
                    and change.allow_overwrite != current.allow_overwrite
                ):
                    raise Forbidden("only a project admin may change allow_overwrite")
            inference = (
                change.inference_config.apply_to(current.inference_config)
                if change.inference_config is not None
                else current.inference_config
            )
            problems = registry_problems(inference, self._registry)
            if problems:
                raise BadRequest("registry validation failed: " + listing(problems))
            allow_overwrite = (
                change.allow_overwrite
                if change.allow_overwrite is not None
                else current.allow_overwrite
            )
            now_ms = int(self._clock() * 1000)
            await configs.update_config(
                conn,
                project_id,
                active=change.active,
                allow_overwrite=allow_overwrite,
                inference_config=inference.model_dump_json(),
                updated_at_ms=now_ms,
            )
            await audit.append(
                conn,
                actor,
                action="project_config.update",
                target=f"project_config/{project_id}",
                project_id=project_id,
                now_ms=now_ms,
                before=_audited(current.active, current.allow_overwrite, current.inference_config),
                after=_audited(change.active, allow_overwrite, inference),
            )


def _audited(active: bool, allow_overwrite: bool, inference: InferenceConfig) -> dict[str, object]:
    return {
        "active": active,
        "allow_overwrite": allow_overwrite,
        "inference_config": inference.model_dump(mode="json"),
    }
