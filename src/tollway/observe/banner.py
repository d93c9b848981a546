"""The start-up banner of `tollway serve`: what this gateway is about to serve, and from where
(the database URL without its password; the registry — loudly when it is the built-in demo)."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy.engine import make_url

from tollway import __version__
from tollway.observe.logs import FIELDS
from tollway.observe.tracing import tracing_wanted
from tollway.providers.registry import DEMO_REGISTRY, Registry
from tollway.settings import Settings

log = logging.getLogger("tollway")

DEMO_NOTICE = (
    "built-in demo registry: its providers are the mock provider, not real models;"
    " set TOLLWAY_PROVIDERS to a registry of your own"
)


def safe_database_url(url: str) -> str:
    """The URL as an operator may read it: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparseable: say which kind of database, nothing more
        return url.split(":", 1)[0] + "://…"


def banner_fields(settings: Settings, registry: Registry) -> dict[str, Any]:
    demo = registry.source == str(DEMO_REGISTRY)
    return {
        "version": __version__,
        "database": safe_database_url(settings.database_url),
        "registry": "built-in demo registry" if demo else registry.source,
        "models": list(registry.models),
        "providers": list(registry.providers),
        "address": f"http://{settings.host}:{settings.port}",
        "workers": settings.workers,
        "metrics": settings.metrics_token is not None,
        "tracing": tracing_wanted(settings.tracing, os.environ),
        "log_format": settings.log_format,
        "log_level": settings.log_level,
    }


def log_banner(settings: Settings, registry: Registry) -> None:
    """One record (one JSON object in JSON mode); a short block of text otherwise."""
    fields = banner_fields(settings, registry)
    demo = fields["registry"] == "built-in demo registry"
    if settings.log_format == "json":
        log.info("tollway starting", extra={FIELDS: fields})
    else:
        log.info(
            "\n".join(
                [
                    f"Tollway {fields['version']} starting",
                    f"  database:  {fields['database']}",
                    f"  registry:  {fields['registry'].upper() if demo else fields['registry']}",
                    f"  models:    {len(fields['models'])} ({', '.join(fields['models'])})",
                    f"  providers: {len(fields['providers'])} ({', '.join(fields['providers'])})",
                    f"  address:   {fields['address']}",
                    f"  workers:   {fields['workers']}",
                    f"  metrics:   {'on (GET /metrics)' if fields['metrics'] else 'off'}",
                    f"  tracing:   {'on' if fields['tracing'] else 'off'}",
                    f"  logs:      {settings.log_format}, level {settings.log_level}",
                ]
            )
        )
    if demo:
        log.warning(DEMO_NOTICE)
