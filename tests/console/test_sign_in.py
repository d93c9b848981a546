"""Sign-in: a management key is kept in sessionStorage only; an inference key is told why it
cannot sign in; sign-out forgets the key."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in, unlabelled_controls


def stored_key(page: Page) -> str | None:
    value: str | None = page.evaluate("() => sessionStorage.getItem('tollway.managementKey')")
    return value


def test_inference_key_is_refused_with_a_reason(page: Page, site: Site) -> None:
    page.goto(site.console)
    assert unlabelled_controls(page) == []
    page.get_by_label("Management key").fill(site.admin.inference_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("This is an inference key")
    assert stored_key(page) is None

    page.get_by_label("Management key").fill("tw-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("does not know this key")
    assert stored_key(page) is None


def test_sign_in_keeps_the_key_in_the_tab_only_and_sign_out_forgets_it(
    page: Page, site: Site
) -> None:
    sign_in(page, site)
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#who")).to_have_text("ada · default (admin)")
    key = site.admin.management_key
    assert stored_key(page) == key
    assert key not in page.url
    local: int = page.evaluate("() => localStorage.length")
    assert local == 0
    assert key not in page.evaluate("() => document.cookie")

    page.reload()  # the session survives a reload of the tab
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Management key")).to_be_visible()
    assert stored_key(page) is None
    page.goto(site.console + "#/keys")  # nothing behind the sign-in without a key
    expect(page.get_by_label("Management key")).to_be_visible()


def test_keyboard_reaches_every_page_through_the_navigation(page: Page, site: Site) -> None:
    sign_in(page, site)
    main = page.locator("main")
    expect(main).to_be_focused()  # a new page moves the focus to its content
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Models")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Models")).to_have_attribute("aria-current", "page")
    expect(main).to_be_focused()
    for _ in range(
        8
    ):  # Sign out, Models, Playground, Audit, Requests, Budgets, Configuration, API keys
        page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="API keys")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()

    skip = page.locator(".skip-link")  # hidden off-screen until focused
    assert (skip.bounding_box() or {"x": -1.0})["x"] < 0
    skip.focus()
    assert (skip.bounding_box() or {"x": -1.0})["x"] >= 0


def test_a_key_deleted_elsewhere_ends_the_session(page: Page, site: Site) -> None:
    created = site.api(
        "POST", "/v1/manage/api-keys", json={"name": "short-lived", "is_management_key": True}
    )
    key = created.json()["api_key"]
    sign_in(page, site, key=key)
    # The overview's own calls finish first: one of them answering 401 would end the session
    # before the test navigates (a race a loaded machine lost).
    page.wait_for_load_state("networkidle")
    gone = site.api("DELETE", "/v1/manage/api-keys", json={"name": "short-lived"})
    assert gone.status_code == 200
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_label("Management key")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="stopped working")).to_be_visible()
    assert stored_key(page) is None
