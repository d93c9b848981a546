"""`/docs` (Swagger UI) renders with the network blocked: every asset comes from the gateway,
under the console's Content-Security-Policy (a violation is a console error, which fails the
test). There is no `/redoc`."""

from __future__ import annotations

from playwright.sync_api import Page, Route, expect

from tests.console.conftest import Site


def test_docs_render_offline_under_the_csp(page: Page, site: Site) -> None:
    outside: list[str] = []

    def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(site.root + "/"):
            route.continue_()
        else:  # the network is blocked: anything from elsewhere fails
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_gateway)
    response = page.goto(f"{site.root}/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tollway")
    expect(page.locator(".opblock-summary-path", has_text="/v1/chat/completions")).to_be_visible()
    assert outside == []


def test_there_is_no_redoc(site: Site) -> None:
    assert site.api("GET", "/redoc").status_code == 404
    assets = site.api("GET", "/docs/assets/swagger-ui-bundle.js")
    assert assets.status_code == 200
    assert assets.headers["content-security-policy"].startswith("default-src 'self'")
