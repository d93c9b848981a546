"""Project configurations cached per process for ``cache_ttl_s`` seconds.

A change made through this process is seen at once (the PUT handler calls ``forget``);
other replicas see it within the TTL (default 1 s), with no database round trip in between.
"""

from __future__ import annotations

import time

from tollway.projects.config import ProjectConfig
from tollway.projects.service import ProjectService


class ConfigCache:
    def __init__(self, projects: ProjectService, *, ttl_s: float) -> None:
        self._projects = projects
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ProjectConfig | None]] = {}

    async def get(self, project_id: str) -> ProjectConfig | None:
        now = time.monotonic()
        entry = self._entries.get(project_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        config = await self._projects.get_or_none(project_id)
        self._entries[project_id] = (now + self._ttl_s, config)
        return config

    def forget(self, project_id: str) -> None:
        self._entries.pop(project_id, None)
