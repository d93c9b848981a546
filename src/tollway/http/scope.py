"""Keys of the ASGI scope that Tollway's middleware and handlers share (a leaf module: the
error renderer, the body limit and the request dependencies all read them)."""

from __future__ import annotations

EXCHANGE = "tollway.exchange"  # the scope key under which the handlers find the Exchange
