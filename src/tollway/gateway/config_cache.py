"""Project configurations cached per process for ``cache_ttl_s`` seconds.

A change made through this process is seen at once (the PUT handler calls ``forget``);
other replicas see it within the TTL (default 1 s), with no database round trip in between,
and one read per project when it expires, however many requests are waiting (`TtlCache`).
"""

from __future__ import annotations

from tollway.cache import TtlCache
from tollway.projects.config import ProjectConfig
from tollway.projects.service import ProjectService


class ConfigCache:
    def __init__(self, projects: ProjectService, *, ttl_s: float) -> None:
        self._cache: TtlCache[str, ProjectConfig | None] = TtlCache(
            projects.get_or_none, ttl_s=ttl_s
        )

    async def get(self, project_id: str) -> ProjectConfig | None:
        return await self._cache.get(project_id)

    def forget(self, project_id: str) -> None:
        self._cache.forget(project_id)
