"""Budgets page: create (errors at the field), progress in the current window after real
traffic, delete after confirmation; the overview shows what is left."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def budgets(site: Site) -> list[dict[str, object]]:
    found: list[dict[str, object]] = site.api("GET", "/v1/manage/budgets").json()["budgets"]
    return found


def test_budget_is_created_fills_up_with_traffic_and_is_deleted(page: Page, site: Site) -> None:
    sign_in(page, site, route="#/budgets")
    expect(page.get_by_text("No budgets yet.")).to_be_visible()
    limit = page.get_by_label("Limit (EUR)")

    limit.fill("0.00000001")  # finer than a credit: the API's 400 names the field
    page.get_by_role("button", name="Create budget").click()
    expect(page.locator('[data-field="limit"] > .field-error')).to_have_text(
        "more than 6 decimal places (1 credit = 0.000001 EUR)"
    )
    expect(limit).to_have_attribute("aria-invalid", "true")
    assert budgets(site) == []

    page.get_by_label("Applies to").select_option("key")
    page.get_by_label("API key").select_option("default-inf")
    page.get_by_label("Period").select_option("monthly")
    limit.fill("0.0005")
    page.get_by_role("button", name="Create budget").click()
    row = page.locator("tbody tr").filter(has_text="key default-inf")
    expect(row).to_contain_text("€0.00 of €0.0005 · €0.0005 left")
    [created] = budgets(site)
    assert (created["scope"], created["key_name"], created["period"]) == (
        "key",
        "default-inf",
        "monthly",
    )

    for _ in range(3):
        assert site.chat(max_tokens=32).status_code == 200
    spent = float(str(budgets(site)[0]["spent"]))
    assert spent > 0
    page.reload()
    progress = row.get_by_role("progressbar")
    assert int(progress.get_attribute("value") or 0) == round(spent / 0.0005 * 1000)
    expect(row).to_contain_text(f"of €0.0005 · €{0.0005 - spent:.6f}".rstrip("0") + " left")

    page.goto(f"{site.console}#/overview")  # the overview shows the same budget
    expect(page.locator("tbody tr").filter(has_text="key default-inf")).to_contain_text("left")

    page.goto(f"{site.console}#/budgets")
    row.get_by_role("button", name="Delete budget key default-inf monthly").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete budget").click()
    expect(page.get_by_text("No budgets yet.")).to_be_visible()
    assert budgets(site) == []


def test_members_are_told_budgets_belong_to_admins(page: Page, site: Site) -> None:
    sign_in(page, site, key=site.member.management_key, route="#/budgets")
    expect(page.get_by_text("Budgets are managed by project admins")).to_be_visible()
    expect(page.get_by_role("button", name="Create budget")).to_have_count(0)


def test_at_phone_width_the_budgets_table_is_whole(phone: Page, site: Site) -> None:
    """Every cell of the budgets table lies inside a 390 px screen: no column cut off or
    hidden behind a sideways scroll. Each row is a card, each cell named by its column."""
    created = site.api(
        "POST",
        "/v1/manage/budgets",
        json={"scope": "key", "key_name": "default-inf", "period": "weekly", "limit": 12.5},
    )
    assert created.status_code in (200, 201), created.text
    try:
        sign_in(phone, site, route="#/budgets")
        row = phone.locator("tbody tr").filter(has_text="key default-inf")
        expect(row).to_contain_text("€12.50")
        width = phone.viewport_size["width"] if phone.viewport_size else 0
        cells = row.locator("td")
        assert cells.count() >= 4
        for index in range(cells.count()):
            box = cells.nth(index).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
                cells.nth(index).get_attribute("data-label"),
                box,
            )
        hidden: int = phone.evaluate(
            "() => Math.max(...[...document.querySelectorAll('.table-wrap')]"
            ".map((w) => w.scrollWidth - w.clientWidth))"
        )
        assert hidden <= 0, f"a table scrolls sideways by {hidden}px"
        # The column's name is shown with each cell.
        label = phone.evaluate(
            "(cell) => getComputedStyle(cell, '::before').content",
            row.locator("td").first.element_handle(),
        )
        assert label.strip('"') == row.locator("td").first.get_attribute("data-label")
    finally:
        for budget in budgets(site):
            site.api("DELETE", "/v1/manage/budgets", json={"id": budget["id"]})
