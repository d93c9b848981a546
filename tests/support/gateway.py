"""A real Tollway gateway on loopback, in front of real mock-provider servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from fastapi import FastAPI

from tests.support.servers import serving
from tollway.app import create_app
from tollway.settings import Settings


@contextmanager
def running_gateway(
    database_url: str, registry_path: Path | None = None, **settings: object
) -> Iterator[tuple[str, FastAPI]]:
    """Yields (base URL ending in /v1, app)."""
    app = create_app(
        Settings(
            database_url=database_url,
            providers=str(registry_path) if registry_path else None,
            **settings,  # type: ignore[arg-type]
        )
    )
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1", app


def write_registry(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
