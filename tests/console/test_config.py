"""Project configuration page: a policy saved in the form changes the next route (seen in the
playground's metadata); the API's 400 is shown at the field it names; members read only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


@pytest.fixture(autouse=True)
def default_config(site: Site) -> Iterator[None]:
    site.reset_config()
    yield
    site.reset_config()


def served_by(page: Page, site: Site) -> str:
    page.goto(f"{site.console}#/playground")
    page.get_by_role("button", name="Send").click()
    provider = page.locator("#served-provider")
    expect(provider).not_to_be_empty()
    return provider.inner_text()


def test_a_saved_policy_changes_the_next_route(page: Page, site: Site) -> None:
    sign_in(page, site)
    before = served_by(page, site)
    assert before != "demo-cheap"  # balanced ranking prefers another endpoint

    page.goto(f"{site.console}#/config")
    # Each provider's flags once, after its name (the demo's names do not repeat them).
    expect(page.locator("label", has_text="demo-eu —")).to_have_text("demo-eu — Demo EU (EU, ZDR)")
    page.get_by_label("Only these providers:").check()
    page.get_by_label(re.compile(r"^demo-cheap ")).check()
    page.get_by_label(re.compile(r"^Cost")).check()
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    saved = site.api("GET", "/v1/project-configs").json()["inference_config"]
    assert saved["allowed_providers"] == ["demo-cheap"]
    assert saved["preference"] == "cost"

    assert served_by(page, site) == "demo-cheap"

    page.goto(f"{site.console}#/config")  # the form shows what was saved
    expect(page.get_by_label(re.compile(r"^demo-cheap "))).to_be_checked()
    expect(page.get_by_label(re.compile(r"^demo-eu "))).not_to_be_checked()
    page.get_by_label("All providers of the registry").check()
    page.get_by_label("EU-native providers only").check()
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    assert served_by(page, site) in {"demo-eu", "demo-fast"}


def test_the_apis_validation_error_is_shown_at_its_field(page: Page, site: Site) -> None:
    sign_in(page, site, route="#/config")
    blacklist = page.get_by_label("Blacklisted models")
    blacklist.fill("no-such-model, tollway-demo-small")
    page.get_by_role("button", name="Save configuration").click()
    error = page.locator('[data-field="blacklisted_models"] > .field-error')
    expect(error).to_have_text("unknown model 'no-such-model'")
    expect(blacklist).to_have_attribute("aria-invalid", "true")
    expect(blacklist).to_be_focused()
    assert (
        site.api("GET", "/v1/project-configs").json()["inference_config"]["blacklisted_models"]
        == []
    )

    # A problem that names no field is shown for the whole form.
    blacklist.fill("")
    page.get_by_label("Only these providers:").check()
    page.get_by_role("button", name="Save configuration").click()
    expect(error).to_be_hidden()
    expect(page.get_by_role("alert")).to_contain_text("the policy leaves no routable model")


def test_members_read_the_configuration_and_edit_only_when_overwrites_are_allowed(
    page: Page, site: Site
) -> None:
    sign_in(page, site, key=site.member.management_key, route="#/config")
    expect(page.get_by_text("only project admins can change it")).to_be_visible()
    expect(page.get_by_role("button", name="Save configuration")).to_be_disabled()
    expect(page.get_by_label("EU-native providers only")).to_be_disabled()

    site.api("PUT", "/v1/project-configs", json={"active": True, "allow_overwrite": True})
    page.reload()
    expect(page.get_by_role("button", name="Save configuration")).to_be_enabled()
    expect(page.get_by_label(re.compile(r"^Allow overwrite"))).to_be_disabled()
    page.get_by_label("Zero data retention only").check()
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    config = site.api("GET", "/v1/project-configs").json()
    assert config["inference_config"]["allow_zero_data_retention"] is True
    assert config["allow_overwrite"] is True
