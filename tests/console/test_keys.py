"""API keys page: a key is created, shown once, copied, and used for a chat in the
playground; deleting asks first; the session's own key cannot be deleted (the API's 400)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import Site, sign_in


def key_names(site: Site) -> list[str]:
    return [k["name"] for k in site.api("GET", "/v1/manage/api-keys").json()["api_keys"]]


def test_created_key_is_shown_once_copied_and_used_in_the_playground(
    page: Page, site: Site
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, site, route="#/keys")
    page.get_by_label("Name", exact=True).fill("console-made")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    assert secret.startswith("tw-")
    expect(page.locator('tr[data-key="console-made"]')).to_contain_text("Inference")
    assert "console-made" in key_names(site)

    page.get_by_role("button", name="Copy key").click()
    expect(page.locator("#toast")).to_have_text("Key copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret

    page.get_by_role("button", name="Try it in the playground").click()
    expect(page.get_by_role("heading", name="Playground", level=1)).to_be_visible()
    expect(page.get_by_label("Send with")).to_have_value("new")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#served-provider")).not_to_be_empty()
    expect(page.locator("#reply")).not_to_be_empty()
    usage = site.api("GET", "/v1/manage/usage?group_by=user_key").json()["rows"]
    assert [r["requests"] for r in usage if r["key_name"] == "console-made"] == [1]

    # Shown once: the secret is in no page, no URL and no storage; only the session key is.
    page.get_by_role("link", name="API keys").click()
    expect(page.locator('tr[data-key="console-made"]')).to_be_visible()
    assert secret not in page.content()
    assert secret not in page.url
    storage = page.evaluate("() => Object.entries(sessionStorage)")
    assert storage == [["tollway.managementKey", site.admin.management_key]]


def test_a_duplicate_name_is_shown_at_the_name_field(page: Page, site: Site) -> None:
    sign_in(page, site, route="#/keys")
    page.get_by_label("Name", exact=True).fill("default-inf")
    page.get_by_label("Management key", exact=False).check()
    page.get_by_role("button", name="Create key").click()
    error = page.locator('[data-field="name"] .field-error')
    expect(error).to_have_text("an API key named 'default-inf' already exists")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()


def test_delete_asks_first_and_the_session_key_cannot_be_deleted(page: Page, site: Site) -> None:
    created = site.api("POST", "/v1/manage/api-keys", json={"name": "to-delete"})
    assert created.status_code == 201
    sign_in(page, site, route="#/keys")
    row = page.locator('tr[data-key="to-delete"]')

    row.get_by_role("button", name="Delete key to-delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row).to_be_visible()
    assert "to-delete" in key_names(site)

    row.get_by_role("button", name="Delete key to-delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete key").click()
    expect(row).to_have_count(0)
    assert "to-delete" not in key_names(site)

    own = page.locator('tr[data-key="default-mgmt"]')
    expect(own).to_contain_text("this session")
    own.get_by_role("button", name="Delete key default-mgmt").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete key").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Could not delete “default-mgmt”: cannot delete the API key used for this request"
    )
    expect(own).to_be_visible()
    assert "default-mgmt" in key_names(site)
