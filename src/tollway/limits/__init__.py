"""Rate limits: requests and tokens per minute per project, user and key."""
