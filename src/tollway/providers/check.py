"""`tollway providers check`: is each provider of the registry reachable, does it accept our
secret, and does it list the upstream models the registry routes to it?

One `GET {base_url}/models` per provider, all at once, with the provider's own secret. What a
provider says about a rejected secret is never repeated (it may echo the key)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Literal

import aiohttp
import orjson

from tollway.frozen import frozen
from tollway.providers.registry import Provider, Registry

Status = Literal["ok", "unreachable", "unauthorised", "error", "models_missing", "skipped"]


@frozen
class ProviderCheck:
    slug: str
    base_url: str
    status: Status
    reachable: bool | None  # None: not tried (skipped)
    authorised: bool | None
    expected_models: tuple[str, ...]
    missing_models: tuple[str, ...]
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


def expected_models(registry: Registry) -> dict[str, tuple[str, ...]]:
    """The upstream model ids the registry routes to each provider, in file order."""
    wanted: dict[str, dict[str, None]] = {slug: {} for slug in registry.providers}
    for model_id in registry.models:
        for endpoint in registry.endpoints_of(model_id):
            wanted[endpoint.provider.slug][endpoint.upstream_model] = None
    return {slug: tuple(models) for slug, models in wanted.items()}


async def check_providers(
    registry: Registry, skipped: Mapping[str, str], *, timeout_s: float = 10.0
) -> list[ProviderCheck]:
    """One check per provider in file order, then the optional providers left out."""
    wanted = expected_models(registry)
    async with aiohttp.ClientSession() as session:
        checks = await asyncio.gather(
            *(
                _check(session, provider, wanted[provider.slug], timeout_s)
                for provider in registry.providers.values()
            )
        )
    skipped_checks = [
        ProviderCheck(slug, "", "skipped", None, None, (), (), f"optional, skipped: {why}")
        for slug, why in skipped.items()
    ]
    return [*checks, *skipped_checks]


async def _check(
    session: aiohttp.ClientSession, provider: Provider, wanted: tuple[str, ...], timeout_s: float
) -> ProviderCheck:
    def result(
        status: Status,
        detail: str,
        *,
        reachable: bool = True,
        authorised: bool | None = None,
        missing: tuple[str, ...] = (),
    ) -> ProviderCheck:
        return ProviderCheck(
            provider.slug,
            provider.base_url,
            status,
            reachable,
            authorised,
            wanted,
            missing,
            detail,
        )

    headers = {"accept": "application/json"}
    if provider.api_key:
        headers["authorization"] = f"Bearer {provider.api_key}"
    timeout = aiohttp.ClientTimeout(
        total=min(provider.timeout_s, timeout_s), sock_connect=provider.connect_timeout_s
    )
    url = f"{provider.base_url}/models"
    try:
        async with session.get(url, headers=headers, timeout=timeout) as response:
            status = response.status
            body = await response.read()
    except TimeoutError:
        return result("unreachable", f"no answer within {timeout.total:g} s", reachable=False)
    except aiohttp.ClientError as error:
        return result("unreachable", connect_failure(error), reachable=False)
    if status in (401, 403):
        return result(
            "unauthorised",
            f"answered {status}: the provider rejected the secret"
            + ("" if provider.api_key else " (no api_key_env is set for it)"),
            authorised=False,
        )
    if status != 200:
        return result("error", f"GET /models answered {status}")
    listed = _model_ids(body)
    if listed is None:
        return result("error", "GET /models did not answer an OpenAI model list", authorised=True)
    missing = tuple(model for model in wanted if model not in listed)
    if missing:
        return result(
            "models_missing",
            f"{len(missing)} of {_models(len(wanted))} not listed: {', '.join(missing)}",
            authorised=True,
            missing=missing,
        )
    return result("ok", f"{_models(len(wanted))} listed", authorised=True)


def _models(count: int) -> str:
    return f"{count} upstream model{'' if count == 1 else 's'}"


def connect_failure(error: aiohttp.ClientError) -> str:
    """One short line for a failed connection, in our words: aiohttp's own text carries its
    internals ("ssl:default [Connect call failed ('127.0.0.1', 9100)]")."""
    if isinstance(error, aiohttp.ClientSSLError):
        return "cannot connect: TLS handshake failed (certificate or protocol not accepted)"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"cannot connect: host {error.host} not found"
    if isinstance(error, aiohttp.ClientConnectorError):
        code = error.os_error.errno
        why = os.strerror(code).lower() if code else "connection failed"
        return f"cannot connect to {error.host}:{error.port}: {why}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(error, aiohttp.InvalidURL):
        return "cannot connect: the base_url is not a valid URL"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the answer to GET /models was cut short"
    return f"cannot connect ({type(error).__name__})"


def _model_ids(body: bytes) -> frozenset[str] | None:
    """The ids of an OpenAI `{"data": [{"id": ...}]}` list; None when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    return frozenset(
        entry["id"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("id"), str)
    )
