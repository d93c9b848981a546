"""Observability: the request log line, logging set-up, the request log table's writer."""
