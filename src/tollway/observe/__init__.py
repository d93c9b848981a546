"""Observability: logging and the request line, the request log, metrics, tracing. The hot
path calls it; it calls nothing back."""
