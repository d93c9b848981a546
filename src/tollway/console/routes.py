"""The web console: static files under ``/console``, served by the gateway itself.

The files are unauthenticated (they hold nothing secret); every API call the console makes
carries the signed-in management key as a bearer token, like any other client. A strict
Content-Security-Policy allows only this origin's own scripts, styles and API: no inline
script, no inline style attribute, no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # Revalidate every time (cheap: ETag → 304), so a changed file is seen on the next load.
    "cache-control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers on every file it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_console(app: FastAPI) -> None:
    app.mount("/console", ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
