"""Console single sign-on against a real OIDC issuer on loopback (tests/support/oidc_issuer),
the gateway in-process, on both backends: the code flow with PKCE, the session cookie and
its flags, CSRF, projects, sign-out, refused tokens and users, and the audit rows of each."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.oidc_issuer import LoopbackIssuer, running_issuer
from tests.support.world import World
from tollway.app import create_app
from tollway.audit.service import AuditService, parse_audit_query
from tollway.observe.logs import FIELDS
from tollway.settings import Settings


@pytest.fixture
def issuer() -> Iterator[LoopbackIssuer]:
    with running_issuer() as running:
        yield running


def settings_for(database_url: str, issuer: LoopbackIssuer, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        oidc_issuer=issuer.url,
        oidc_client_id=issuer.client_id,
        oidc_client_secret=issuer.client_secret,
        **extra,
    )


async def gateway(
    settings: Settings, base_url: str = "http://tollway"
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@pytest.fixture
async def console(
    world: World, database_url: str, issuer: LoopbackIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in gateway(settings_for(database_url, issuer)):
        yield client


async def sign_in(client: httpx.AsyncClient) -> httpx.Response:
    """Start at /auth/oidc/login, let the issuer sign in its user, come back to the callback."""
    start = await client.get("/auth/oidc/login")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(start.headers["location"])
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    return await client.get(f"{back.path}?{back.query}")


async def audit_rows(world: World, action: str) -> list[dict[str, Any]]:
    query = parse_audit_query(
        action=action, actor=None, since=None, until=None, limit="200", cursor=None
    )
    page = await AuditService(world.db).list(user_id=None, project_id=None, query=query)
    return list(page["entries"])


async def test_sign_in_session_csrf_projects_and_sign_out(
    world: World,
    console: httpx.AsyncClient,
    issuer: LoopbackIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ada = await world.member("ada", "p1")
    p2 = await world.member("ada", "p2", role="member")
    carol = await world.member("carol", "p3")
    assert (await console.get("/auth/session")).json() == {"oidc": True, "signed_in": False}

    done = await sign_in(console)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/#/overview"
    cookie = next(
        c for c in done.headers.get_list("set-cookie") if c.startswith("tollway_session=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain HTTP here; see the HTTPS test
    assert any(f.startswith("max-age=3600") for f in flags)
    assert issuer.token_requests == 1

    state = (await console.get("/auth/session")).json()
    assert state["signed_in"] is True and state["user"] == "ada"
    assert [(p["name"], p["role"]) for p in state["projects"]] == [
        ("p1", "admin"),
        ("p2", "member"),
    ]
    csrf = state["csrf_token"]

    # The cookie alone is not enough: the CSRF header must come with it.
    assert (await console.get("/v1/manage/me")).status_code == 403
    assert (await console.get("/v1/manage/me", headers={"x-csrf-token": "nope"})).status_code == 403
    me = await console.get("/v1/manage/me", headers={"x-csrf-token": csrf})
    assert me.status_code == 200
    assert (me.json()["user"], me.json()["project"], me.json()["role"]) == ("ada", "p1", "admin")
    assert me.json()["key_name"] is None
    (line,) = [
        getattr(r, FIELDS)
        for r in caplog.records
        if r.name == "tollway.request"
        and getattr(r, FIELDS, {}).get("request_id") == me.headers["x-request-id"]
    ]
    assert (line["auth"], line["user_id"], line["key_name"]) == ("session", ada.user_id, None)
    assert "tollway_session" not in str(line) and csrf not in str(line)  # never a secret
    other = await console.get(
        "/v1/manage/me", headers={"x-csrf-token": csrf, "x-tollway-project": p2.project_id}
    )
    assert (other.json()["project"], other.json()["role"]) == ("p2", "member")
    foreign = await console.get(
        "/v1/manage/me", headers={"x-csrf-token": csrf, "x-tollway-project": carol.project_id}
    )
    assert foreign.status_code == 403

    # A change made through the session is audited with the session's user as actor.
    made = await console.post(
        "/v1/manage/api-keys", json={"name": "sso-key"}, headers={"x-csrf-token": csrf}
    )
    assert made.status_code == 201
    (row,) = [
        r for r in await audit_rows(world, "api_key.create") if r["target"] == "api_key/sso-key"
    ]
    assert row["actor"] == {"kind": "session", "name": "ada", "user_id": ada.user_id}
    assert row["request_id"] == made.headers["x-request-id"]
    (signed,) = await audit_rows(world, "console.sign_in")
    assert signed["actor"]["name"] == "ada" and signed["after"]["subject"] == "u-1"

    # A management key still works alongside (pasting a key is unchanged).
    assert (
        await console.get(
            "/v1/manage/me", headers={"authorization": f"Bearer {ada.management_key}"}
        )
    ).status_code == 200

    assert (await console.delete("/auth/session")).status_code == 403  # no CSRF header
    out = await console.delete("/auth/session", headers={"x-csrf-token": csrf})
    assert out.status_code == 204
    token = done.cookies.get("tollway_session") or ""
    assert token
    gone = await console.get(
        "/v1/manage/me", headers={"x-csrf-token": csrf, "cookie": f"tollway_session={token}"}
    )
    assert gone.status_code == 401
    assert len(await audit_rows(world, "console.sign_out")) == 1


@pytest.mark.parametrize(
    "mode", ["forged", "expired", "wrong_audience", "wrong_issuer", "wrong_nonce", "hs256"]
)
async def test_a_bad_id_token_is_refused_and_audited(
    world: World, console: httpx.AsyncClient, issuer: LoopbackIssuer, mode: str
) -> None:
    await world.member("ada", "p1")
    issuer.mode = mode
    done = await sign_in(console)
    assert done.status_code == 303
    assert done.headers["location"] == "/console/?sso_error=invalid_token"
    assert not any(c.startswith("tollway_session=") for c in done.headers.get_list("set-cookie"))
    assert (await console.get("/auth/session")).json()["signed_in"] is False
    (failed,) = await audit_rows(world, "console.sign_in_failed")
    assert failed["after"]["code"] == "invalid_token"
    assert await audit_rows(world, "console.sign_in") == []


async def test_unknown_user_refused_unless_the_operator_allows(
    world: World, database_url: str, issuer: LoopbackIssuer, console: httpx.AsyncClient
) -> None:
    issuer.user = {"sub": "u-9", "preferred_username": "zed"}
    refused = await sign_in(console)
    assert refused.headers["location"] == "/console/?sso_error=unknown_user"
    (failed,) = await audit_rows(world, "console.sign_in_failed")
    assert failed["actor"]["name"] == "zed"
    with pytest.raises(Exception, match="unknown user"):
        await world.accounts.user("zed")

    await world.member("ada", "research")
    issuer.user = {
        "sub": "u-9",
        "preferred_username": "zed",
        "groups": ["tollway-admin:research", "x"],
    }
    allowing = settings_for(database_url, issuer, oidc_create_users=True, oidc_admin_claim="groups")
    async for client in gateway(allowing):
        done = await sign_in(client)
        assert done.headers["location"] == "/console/#/overview"
        projects = (await client.get("/auth/session")).json()["projects"]
        assert [(p["name"], p["role"]) for p in projects] == [("research", "admin")]
    zed = await world.accounts.user("zed")
    (created,) = [r for r in await audit_rows(world, "user.create") if r["target"] == "user/zed"]
    assert created["actor"] == {"kind": "session", "name": "zed", "user_id": zed.id}
    granted = [
        r
        for r in await audit_rows(world, "membership.set")
        if r["target"] == "membership/research/zed"
    ]
    assert granted[0]["after"]["role"] == "admin"


async def test_https_cookie_is_secure_and_a_stray_callback_is_refused(
    world: World, database_url: str, issuer: LoopbackIssuer
) -> None:
    await world.member("ada", "p1")
    async for client in gateway(settings_for(database_url, issuer), base_url="https://tollway"):
        start = await client.get("/auth/oidc/login")
        flow_cookie = start.headers["set-cookie"].lower()
        assert (
            "httponly" in flow_cookie and "secure" in flow_cookie and "samesite=lax" in flow_cookie
        )
        redirect = parse_qs(urlsplit(start.headers["location"]).query)["redirect_uri"][0]
        assert redirect == "https://tollway/auth/oidc/callback"
        stray = await client.get("/auth/oidc/callback?code=abc&state=not-it")
        assert stray.headers["location"] == "/console/?sso_error=bad_state"
        done = await sign_in(client)
        cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("tollway_session=")
        )
        assert "secure" in cookie.lower()
    assert await audit_rows(world, "console.sign_in_failed") == []  # a stray callback is no attempt


async def test_without_oidc_the_cookie_means_nothing(world: World, database_url: str) -> None:
    ada = await world.member("ada", "p1")
    async for client in gateway(Settings(database_url=database_url)):
        assert (await client.get("/auth/session")).json() == {"oidc": False, "signed_in": False}
        assert (await client.get("/auth/oidc/login")).status_code == 404
        anonymous = await client.get("/v1/manage/me", headers={"cookie": "tollway_session=x"})
        assert anonymous.status_code == 401
        keyed = await client.get(
            "/v1/manage/me", headers={"authorization": f"Bearer {ada.management_key}"}
        )
        assert keyed.status_code == 200
