"""The console shows token classes: a request whose prompt the mock half-caches and whose
answer reasons shows its cached, cache-written and reasoning tokens in the request log (list
and detail) and in the overview's tokens by class."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in

LONG = [{"role": "user", "content": " ".join(["word"] * 2000)}]  # 2003 prompt tokens


def test_requests_and_overview_show_the_token_classes(page: Page, site: Site) -> None:
    served = site.chat(messages=LONG, reasoning_effort="low", max_tokens=40)
    assert served.status_code == 200, served.text
    usage = served.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1001
    assert site.chat(max_tokens=8).status_code == 200  # a short one: no classes

    sign_in(page, site, route="#/requests")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    headers = page.locator("thead th")
    expect(headers).to_contain_text(["Cached", "Reasoning"])
    classed = rows.filter(has_text="1,001")
    expect(classed).to_have_count(1)
    expect(classed).to_contain_text("16")
    classed.get_by_role("link").click()
    expect(page.locator("#detail-tokens")).to_have_text(
        f"2,003 in (1,001 cached, 500 written to cache), {usage['completion_tokens']} out"
        " (16 reasoning), upstream"
    )

    page.goto(f"{site.console}#/")
    card = page.locator("#token-classes")
    expect(card.locator("[data-field=cached_prompt_tokens]")).to_have_text("1,001")
    expect(card.locator("[data-field=cache_write_tokens]")).to_have_text("500")
    expect(card.locator("[data-field=reasoning_tokens]")).to_have_text("16")
    prompt = 2003 + served_prompt(site)
    expect(card.locator("[data-field=prompt_tokens]")).to_have_text(f"{prompt:,}")


def served_prompt(site: Site) -> int:
    """The short request's prompt tokens, as the usage API reports them."""
    rows = site.api("GET", "/v1/manage/requests").json()["requests"]
    return sum(r["prompt_tokens"] for r in rows if r["cached_prompt_tokens"] == 0)


def test_models_show_the_class_prices(page: Page, site: Site) -> None:
    """The demo registry prices no class apart: each class price is the input price."""
    sign_in(page, site, route="#/models")
    eu = page.locator('tr[data-endpoint="tollway-demo-chat@demo-eu"]')
    expect(eu.locator('td[data-label="Input / 1M"]')).to_have_text("€0.20")
    expect(eu.locator('td[data-label="Cached input / 1M"]')).to_have_text("€0.20")
    expect(eu.locator('td[data-label="Cache write / 1M"]')).to_have_text("€0.20")
