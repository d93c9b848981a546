"""API keys: created once, shown once, stored as digests."""
