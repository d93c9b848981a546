"""Keys under which the edge keeps per-request objects in the ASGI scope (a leaf module: the
middleware, the error handlers and the dependencies all read them)."""

from __future__ import annotations

EXCHANGE = "tollway.exchange"  # the request's Exchange (http/exchange.py)
