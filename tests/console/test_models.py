"""Models page: the registry's prices and flags, and this replica's live speed and circuit
state per endpoint, refreshed in place."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def test_models_show_prices_flags_speed_and_open_circuits(page: Page, site: Site) -> None:
    for _ in range(3):
        assert site.chat("flaky-chat", max_tokens=32).status_code == 503
    served = site.chat(max_tokens=32, allowed_providers=["demo-eu"]).json()["provider"]
    assert served == "demo-eu"

    sign_in(page, site, route="#/models")
    down = page.locator('tr[data-endpoint="flaky-chat@demo-down"]')
    expect(down).to_contain_text("circuit open")
    expect(down).to_contain_text("3 failures in a row")
    eu = page.locator('tr[data-endpoint="tollway-demo-chat@demo-eu"]')
    expect(eu.locator('td[data-label="Samples"]')).to_have_text("1")
    expect(eu.locator('td[data-label="Input / 1M"]')).to_have_text("€0.20")
    expect(eu.locator('td[data-label="EU-native"]')).to_have_text("yes")
    expect(eu.locator('td[data-label="ZDR"]')).to_have_text("yes")
    fast = page.locator('tr[data-endpoint="tollway-demo-chat@demo-fast"]')
    expect(fast.locator('td[data-label="Quantization"]')).to_have_text("fp8")
    expect(fast.locator('td[data-label="Samples"]')).to_have_text("hint only")
    expect(fast.locator('td[data-label="TTFT"]')).to_have_text("100 ms")  # the registry's hint

    assert site.chat(max_tokens=32, allowed_providers=["demo-eu"]).status_code == 200
    page.get_by_role("button", name="Refresh").click()
    expect(eu.locator('td[data-label="Samples"]')).to_have_text("2")
