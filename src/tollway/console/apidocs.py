"""`/docs`: Swagger UI over `/openapi.json`, served by the gateway itself — no CDN, so it works
offline and behind a firewall. The assets come from the pinned `fastapi-offline` package (its
`static/` directory: Swagger UI's bundle and stylesheet); the page and its start-up script are
ours, so no inline script is needed and the console's Content-Security-Policy applies, with
one addition: Swagger UI's stylesheet draws its icons as `data:` images. There is no `/redoc`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

from tollway.console.routes import CONTENT_SECURITY_POLICY, SECURITY_HEADERS, ConsoleFiles

DOCS_CSP = CONTENT_SECURITY_POLICY.replace("img-src 'self'", "img-src 'self' data:")
DOCS_HEADERS = {**SECURITY_HEADERS, "content-security-policy": DOCS_CSP}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollway API</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""

START = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
});
"""


def swagger_assets() -> Path:
    """The directory of the pinned Swagger UI files (`fastapi-offline`'s `static/`)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the fastapi-offline package (Swagger UI's files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class DocsFiles(ConsoleFiles):
    """The Swagger UI files, with the docs page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(DOCS_HEADERS)
        return response


def mount_api_docs(app: FastAPI) -> None:
    async def page(_request: Request) -> Response:
        return HTMLResponse(PAGE, headers=DOCS_HEADERS)

    async def start(_request: Request) -> Response:
        return Response(START, media_type="text/javascript", headers=DOCS_HEADERS)

    app.add_route("/docs", page, include_in_schema=False)
    app.add_route("/docs/start.js", start, include_in_schema=False)
    app.mount("/docs/assets", DocsFiles(directory=swagger_assets()), name="docs-assets")
