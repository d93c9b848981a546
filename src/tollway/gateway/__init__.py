"""The hot path: authorize → policy → route → call → meter."""
