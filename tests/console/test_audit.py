"""Audit page: an admin sees the project's changes (a key made in the console among them,
with the key's name as actor), filters them and opens one's fields; a member sees only
their own changes."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def test_admin_sees_changes_filters_and_opens_one(page: Page, site: Site) -> None:
    made = site.api(
        "POST", "/v1/manage/rate-limits", json={"scope": "project", "requests_per_minute": 900}
    )
    assert made.status_code == 201
    sign_in(page, site, route="#/audit")
    log = page.locator("#audit-log")
    expect(log).to_contain_text("rate_limit.create")
    expect(log).to_contain_text("default-mgmt (key)")
    page.get_by_label("Action").fill("rate_limit.create")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#audit-log tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_text("Before / after").click()
    expect(rows.first.locator("pre").nth(1)).to_contain_text('"requests_per_minute": 900')
    expect(rows.first.locator("pre").first).to_have_text("—")
    site.api("DELETE", "/v1/manage/rate-limits", json={"id": made.json()["id"]}).raise_for_status()


def test_member_sees_only_their_own_changes(page: Page, site: Site) -> None:
    made = site.api(
        "POST", "/v1/manage/api-keys", site.member.management_key, json={"name": "bob-audit"}
    )
    assert made.status_code == 201
    sign_in(page, site, site.member.management_key, route="#/audit")
    rows = page.locator("#audit-log tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("api_key/bob-audit")
    expect(page.locator("#audit-log")).not_to_contain_text("rate_limit")
