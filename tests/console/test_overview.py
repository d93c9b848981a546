"""Overview page: balance, spend, requests per day and the split by model and provider agree
with the API after real traffic through three different providers."""

from __future__ import annotations

from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def exact_eur(amount: float) -> str:
    """What the console prints for a balance: every credit, at least two decimals."""
    text = f"{Decimal(str(amount)):.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"€{whole}.{fraction.ljust(2, '0')}"


def test_overview_agrees_with_the_api(page: Page, site: Site) -> None:
    served = set()
    for providers in (["demo-eu"], ["demo-cheap"], ["demo-fast"]):
        response = site.chat(max_tokens=32, allowed_providers=providers)
        assert response.status_code == 200
        served.add(response.json()["provider"])
    assert served == {"demo-eu", "demo-cheap", "demo-fast"}
    assert site.chat("tollway-demo-small", max_tokens=32).status_code == 200
    balance = site.api("GET", "/v1/user/balance").json()["current_balance"]
    assert balance < 5

    sign_in(page, site)
    expect(page.locator("#stat-balance")).to_have_text(exact_eur(balance))
    expect(page.locator("#stat-requests")).to_have_text("4")
    today_cost = sum(r["cost"] for r in site.api("GET", "/v1/manage/usage").json()["rows"])
    assert today_cost > 0
    expect(page.locator("#stat-today")).not_to_have_text("€0.00")

    requests_chart = page.get_by_role("img", name="Requests per day")
    assert requests_chart.locator("rect.bar").last.get_attribute("data-value") == "4"
    assert requests_chart.locator("rect.bar").count() == 30
    # The x axis is labelled up to the newest day (today), not a day short.
    today = requests_chart.locator("rect.bar").last.locator("title").text_content() or ""
    ticks = requests_chart.locator('text.tick[text-anchor="middle"]')
    assert ticks.count() >= 7
    assert ticks.last.text_content() == today.split(":")[0]
    provider_split = page.locator("#split-provider")
    for provider in served:
        expect(provider_split).to_contain_text(provider)
    model_split = page.locator("#split-model")
    expect(model_split).to_contain_text("tollway-demo-chat")
    expect(model_split).to_contain_text("tollway-demo-small")


def test_a_member_sees_their_own_usage_and_no_budgets(page: Page, site: Site) -> None:
    sign_in(page, site, key=site.member.management_key)
    expect(page.get_by_text("Spend and traffic of your own usage")).to_be_visible()
    expect(page.locator("#stat-requests")).to_have_text("0")
    expect(page.get_by_text("Budgets are managed by project admins.")).to_be_visible()
