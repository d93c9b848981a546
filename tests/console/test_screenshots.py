"""Every page renders with real data, without a CSP violation or a script error, with every
control labelled; its screenshot (1280 px, and the overview at phone width) is written to
docs/console/ when TOLLWAY_CONSOLE_SCREENSHOTS=1 (how the committed ones were made)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in, unlabelled_controls

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
PAGES = [
    ("overview", "Overview"),
    ("keys", "API keys"),
    ("config", "Project configuration"),
    ("budgets", "Budgets"),
    ("requests", "Requests"),
    ("models", "Models"),
    ("playground", "Playground"),
]


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    target = DOCS if os.environ.get("TOLLWAY_CONSOLE_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def traffic(site: Site) -> None:
    budget = {"scope": "project", "period": "daily", "limit": 0.0003}
    assert site.api("POST", "/v1/manage/budgets", json=budget).status_code == 201
    budget = {"scope": "each_key", "period": "monthly", "limit": 0.0002}
    assert site.api("POST", "/v1/manage/budgets", json=budget).status_code == 201
    for providers in (None, ["demo-cheap"], ["demo-eu"], None):
        assert site.chat(max_tokens=32, allowed_providers=providers).status_code == 200
    assert site.chat("tollway-demo-small", max_tokens=32).status_code == 200
    for _ in range(3):  # opens the circuit of the always-failing provider
        assert site.chat("flaky-chat", max_tokens=32).status_code >= 500


def test_every_page_renders_and_is_labelled(page: Page, site: Site, tmp_path: Path) -> None:
    traffic(site)
    sign_in(page, site)
    for route, heading in PAGES:
        page.goto(f"{site.console}#/{route}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        expect(page.locator("main")).not_to_have_attribute("aria-busy", "true")
        if route == "playground":
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#served-provider")).not_to_be_empty()
        assert unlabelled_controls(page) == [], route
        shoot(page, route, tmp_path)
        if route == "requests" and page.locator("#log-unavailable").count() == 0:
            page.locator("tbody tr").filter(has_text="flaky-chat").first.get_by_role("link").click()
            expect(page.locator("#attempts")).to_contain_text("failed")
            shoot(page, "request-detail", tmp_path)


def test_phone_width_has_no_horizontal_scroll(phone: Page, site: Site, tmp_path: Path) -> None:
    sign_in(phone, site)
    for route, heading in PAGES:
        phone.goto(f"{site.console}#/{route}")
        expect(phone.get_by_role("heading", name=heading, level=1)).to_be_visible()
        overflow: int = phone.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{route} scrolls sideways by {overflow}px at phone width"
    phone.goto(f"{site.console}#/overview")
    expect(phone.locator("#stat-balance")).not_to_be_empty()
    shoot(phone, "overview-phone", tmp_path)
