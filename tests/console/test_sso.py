"""Single sign-on through the console in Chromium, against a real OIDC issuer on loopback
(tests/support/oidc_issuer.py): sign in, see only your projects, switch project, sign out;
a forged, expired or wrong-audience ID token is refused with a message; the session cookie's
flags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.support.oidc_issuer import LoopbackIssuer, running_issuer
from tests.support.servers import serving
from tests.support.world import World
from tollway.app import create_app
from tollway.settings import Settings


@dataclass(frozen=True)
class SsoSite:
    root: str
    issuer: LoopbackIssuer

    @property
    def console(self) -> str:
        return f"{self.root}/console/"


async def _populate(database_url: str) -> None:
    world = World(database_url)
    try:
        await world.migrate()
        await world.member("ada", "alpha", role="admin")
        await world.member("ada", "beta", role="member")
        await world.member("carol", "gamma", role="admin")
    finally:
        await world.close()


@pytest.fixture(scope="module")
def sso_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoSite]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('sso') / 'tollway.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(_populate(database_url))).result()
    with running_issuer() as issuer:
        settings = Settings(
            database_url=database_url,
            oidc_issuer=issuer.url,
            oidc_client_id=issuer.client_id,
            oidc_client_secret=issuer.client_secret,
        )
        with serving(create_app(settings)) as port:
            yield SsoSite(f"http://127.0.0.1:{port}", issuer)


def sso_sign_in(page: Page, site: SsoSite) -> None:
    page.goto(site.console)
    page.get_by_role("link", name="Sign in with single sign-on").click()


def test_sign_in_see_only_your_projects_switch_and_sign_out(page: Page, sso_site: SsoSite) -> None:
    sso_site.issuer.mode = "ok"
    sso_site.issuer.user = {"sub": "u-ada", "preferred_username": "ada"}
    sso_sign_in(page, sso_site)
    page.get_by_role("button", name="Sign out").wait_for()
    picker = page.get_by_label("Project")
    expect(picker.locator("option")).to_have_text(["alpha (admin)", "beta (member)"])
    expect(page.locator("#who")).to_contain_text("ada")
    assert "sso_error" not in page.url

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["tollway_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # plain HTTP on loopback; HTTPS sets Secure (tests/http)
    assert session["path"] == "/"
    assert "tollway_session" not in page.evaluate("document.cookie")  # out of scripts' reach

    # The management API answers for the chosen project, through the cookie + CSRF header.
    page.goto(f"{sso_site.console}#/audit")
    expect(page.locator("#audit-log")).to_be_visible()
    picker.select_option(label="beta (member)")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.locator(".lead")).to_contain_text("The changes you made")
    page.goto(f"{sso_site.console}#/keys")
    page.get_by_label("Name").fill("from-sso")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("from-sso").first).to_be_visible()
    page.goto(f"{sso_site.console}#/audit")
    expect(page.locator("#audit-log")).to_contain_text("api_key/from-sso")
    expect(page.locator("#audit-log")).to_contain_text("ada (session)")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in with single sign-on")).to_be_visible()
    state = page.evaluate("fetch('/auth/session').then((r) => r.json())")
    assert state["signed_in"] is False


@pytest.mark.parametrize("mode", ["forged", "expired", "wrong_audience"])
def test_a_bad_id_token_is_refused(page: Page, sso_site: SsoSite, mode: str) -> None:
    sso_site.issuer.mode = mode
    sso_site.issuer.user = {"sub": "u-ada", "preferred_username": "ada"}
    try:
        sso_sign_in(page, sso_site)
        expect(page.get_by_text("could not be verified")).to_be_visible()
        expect(page.get_by_label("Management key")).to_be_visible()
        assert "tollway_session" not in {c["name"] for c in page.context.cookies()}
    finally:
        sso_site.issuer.mode = "ok"


def test_unknown_user_is_told_to_ask_an_operator(page: Page, sso_site: SsoSite) -> None:
    sso_site.issuer.user = {"sub": "u-zed", "preferred_username": "zed"}
    sso_sign_in(page, sso_site)
    expect(page.get_by_text("has no user for you")).to_be_visible()
