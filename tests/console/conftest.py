"""The console in a real browser: Debian's Chromium driven by Playwright, against a real
gateway (uvicorn on a free loopback port, SQLite) in front of real mock providers.

Chromium is never downloaded: it is /usr/bin/chromium from Debian. Without it the browser
tests skip with the reason, and fail when CI is set."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.mock_server import running_mock
from tests.support.servers import serving
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.projects.config import InferenceConfig
from tollway.providers.mock_settings import MockSettings
from tollway.providers.registry import DEMO_REGISTRY
from tollway.settings import Settings

CHROMIUM = Path(os.environ.get("TOLLWAY_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Site:
    root: str  # http://127.0.0.1:PORT
    admin: Member  # admin of project "default", 5 EUR of credits
    member: Member  # a plain member of the same project

    @property
    def console(self) -> str:
        return f"{self.root}/console/"

    def api(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.admin.management_key}"}
        return httpx.request(method, f"{self.root}{path}", headers=headers, timeout=10, **kwargs)

    def chat(self, model: str = "tollway-demo-chat", **fields: Any) -> httpx.Response:
        """A chat with the admin's inference key; ``fields`` go into the body."""
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
        return self.api("POST", "/v1/chat/completions", self.admin.inference_key, json=body)

    def reset_config(self) -> None:
        body = {
            "active": True,
            "allow_overwrite": False,
            "inference_config": InferenceConfig().model_dump(),
        }
        self.api("PUT", "/v1/project-configs", json=body).raise_for_status()


def registry_for(base_url: str, failing_url: str) -> dict[str, Any]:
    """The demo registry pointed at a test mock, plus a provider whose upstream always fails
    (for the circuit breaker on the Models page and failed attempts in the request log)."""
    document: dict[str, Any] = yaml.safe_load(DEMO_REGISTRY.read_text())
    for provider in document["providers"]:
        provider["base_url"] = base_url
    document["providers"].append(
        {
            "slug": "demo-down",
            "name": "Demo Down (always fails)",
            "base_url": failing_url,
            "eu_native": True,
            "timeout_s": 5,
        }
    )
    document["models"].append(
        {
            "id": "flaky-chat",
            "description": "Served only by a provider that always fails.",
            "tags": ["Demo"],
            "context_size": 4096,
            "endpoints": [
                {
                    "provider": "demo-down",
                    "upstream_model": "demo-chat",
                    "pricing": {"input_token": 0.1, "output_token": 0.1},
                }
            ],
        }
    )
    return document


async def _populate(database_url: str) -> tuple[Member, Member]:
    world = World(database_url)
    try:
        await world.migrate()
        admin = await world.member("ada", "default", role="admin", credits_eur="5")
        member = await world.member("bob", "default", role="member", credits_eur="1")
        return admin, member
    finally:
        await world.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("console")
    database_url = f"sqlite:///{tmp / 'tollway.db'}"
    # Its own thread: Playwright's sync API may already run an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        admin, member = pool.submit(lambda: asyncio.run(_populate(database_url))).result()
    with (
        running_mock(MockSettings(ttft_ms=5, tokens_per_second=2000)) as mock_url,
        running_mock(MockSettings(error_rate=1.0, error_status=503)) as failing_url,
    ):
        registry = tmp / "providers.yaml"
        registry.write_text(yaml.safe_dump(registry_for(mock_url, failing_url)))
        app = create_app(Settings(database_url=database_url, providers=str(registry)))
        with serving(app) as port:
            yield Site(f"http://127.0.0.1:{port}", admin, member)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for this package (a launch costs seconds); each test gets a fresh
    context, so no cookie, storage or cache crosses from one test to the next. Package
    scope, not session: Playwright's sync API keeps an event loop marked as running on
    this thread until it stops, which the asyncio tests of other packages cannot share
    (so every test in this package is synchronous)."""
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: the browser tests must run)")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


def _open(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "the server responded with a status of" not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield page
    finally:
        context.close()
    # CSP violations and uncaught script errors are console errors: none is acceptable.
    assert problems == []


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _open(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from _open(browser, PHONE)


def sign_in(page: Page, site: Site, key: str | None = None, route: str = "") -> None:
    page.goto(site.console + route)
    page.get_by_label("Management key").fill(key or site.admin.management_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls a screen reader could not name (no label, aria-label or labelledby)."""
    result: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => !el.closest('[hidden]'))
            .filter((el) => !(el.labels && el.labels.length))
            .filter((el) => !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
            .filter((el) => !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return result
