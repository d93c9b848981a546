"""`tollway providers check`: the registry against the providers it names."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from tollway.commands.common import (
    fail,
    fail_registry,
    group,
    print_json,
    print_table,
    settings_of,
)
from tollway.providers.registry import RegistryError, load_registry

providers_app = group("Inspect the provider registry.")


@providers_app.command("check")
def providers_check(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=300, help="Seconds to wait for each provider.")
    ] = 10.0,
    mock_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Where the demo's mock provider listens, as `demo --mock-port` "
            "(sets TOLLWAY_MOCK_URL for the registry).",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Call each provider's GET /models with its secret: reachable, authorised, and every
    upstream model the registry routes to it listed. Exit status 1 if any provider fails
    (an optional provider skipped for a missing secret is reported, not a failure)."""
    settings = settings_of(ctx)
    environ = dict(os.environ)
    if mock_port is not None:
        environ["TOLLWAY_MOCK_URL"] = f"http://127.0.0.1:{mock_port}/v1"
    try:
        registry = load_registry(settings.providers, environ)
    except RegistryError as exc:
        fail_registry(exc)
    from tollway.providers.check import check_providers  # aiohttp: only this command needs it

    checks = asyncio.run(check_providers(registry, registry.skipped, timeout_s=timeout))
    failed = [check.slug for check in checks if not check.ok]
    if json:
        print_json(
            {
                "registry": registry.source,
                "ok": not failed,
                "providers": [
                    {
                        "provider": c.slug,
                        "base_url": c.base_url or None,
                        "status": c.status,
                        "reachable": c.reachable,
                        "authorised": c.authorised,
                        "expected_models": list(c.expected_models),
                        "missing_models": list(c.missing_models),
                        "detail": c.detail,
                    }
                    for c in checks
                ],
            }
        )
    else:
        print_table(
            ("provider", "status", "base URL", "detail"),
            [(c.slug, c.status, c.base_url or None, c.detail) for c in checks],
            empty="no providers",
        )
    if failed:
        fail(f"{len(failed)} provider(s) failed the check: {', '.join(failed)}")
