"""Tollway: a self-hosted LLM gateway with policy routing and exact accounting."""

from __future__ import annotations

__version__ = "0.1.0"
