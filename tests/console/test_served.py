"""How the console is served by a real gateway: static files under /console with a strict
CSP, nothing inline, nothing from another origin, every file shipped as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx

from tests.console.conftest import Site
from tollway.console.routes import CONTENT_SECURITY_POLICY, STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
SOURCES = [p for p in FILES if p.suffix in {".html", ".js", ".css", ".svg"}]


def test_every_file_is_served_with_the_security_headers(site: Site) -> None:
    assert len(FILES) >= 10
    for file in FILES:
        response = httpx.get(f"{site.console}{file.relative_to(STATIC_DIR).as_posix()}")
        assert response.status_code == 200, file
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.content == file.read_bytes()
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


def test_console_root_is_the_page_and_needs_no_key(site: Site) -> None:
    redirect = httpx.get(f"{site.root}/console")
    assert redirect.status_code in (307, 308)
    assert redirect.headers["location"] == f"{site.root}/console/"
    page = httpx.get(site.console)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    js = httpx.get(f"{site.console}js/app.js")
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    missing = httpx.get(f"{site.console}js/nope.js")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}


def test_nothing_inline_nothing_from_elsewhere_nothing_unsafe() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # no inline script
    for file in SOURCES:
        text = file.read_text()
        assert not re.search(r"\sstyle=|\bon[a-z]+=\"", text), file  # no inline style/handler
        # Offline: no CDN, no font service; the SVG namespace is a name, not a fetch.
        urls = set(re.findall(r"https?://[^\s'\"<>)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), file
        for unsafe in ("innerHTML", "outerHTML =", "insertAdjacentHTML", "eval(", "localStorage"):
            assert unsafe not in text, (file, unsafe)


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["tollway"]
    package = STATIC_DIR.parent.parent
    for file in FILES:
        relative = file.relative_to(package)
        assert any(relative.match(pattern) for pattern in patterns), relative
