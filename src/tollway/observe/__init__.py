"""Observability: metrics and tracing. The hot path calls it; it calls nothing back."""
