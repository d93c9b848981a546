"""One error tree. Each error knows its HTTP status; the edge renders it in the seed shape
(``{"error": msg}``) on the Management API and in the OpenAI shape on the inference API."""

from __future__ import annotations

from collections.abc import Iterable

# Error messages never grow with the input: a value echoed back is cut to QUOTE_CHARS, a list
# of offenders names LIST_ITEMS and counts the rest, and the edge cuts any message at
# MESSAGE_CHARS whatever built it.
QUOTE_CHARS = 64
LIST_ITEMS = 5
MESSAGE_CHARS = 1024
# Every 503 says when to come back: its own figure (an open circuit's remaining cooldown),
# else this.
DEFAULT_RETRY_AFTER_S = 2


def excerpt(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` as text for a message, cut to `limit` characters (with the size left out)."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def listing(items: Iterable[str], limit: int = LIST_ITEMS, separator: str = "; ") -> str:
    """The first `limit` items joined, and how many more there are."""
    shown: list[str] = []
    more = 0
    for item in items:
        if len(shown) < limit:
            shown.append(item)
        else:
            more += 1
    return separator.join(shown) + (f"{separator}and {more} more" if more else "")


class TollwayError(Exception):
    status = 500
    openai_type = "server_error"
    code: str | None = None
    # False: retrying cannot succeed (the official SDKs read `x-should-retry`).
    should_retry: bool | None = None
    # Seconds a client should wait before retrying (sent as `Retry-After`), when it applies.
    retry_after_s: int | None = None
    # Further response headers the error carries (e.g. a rate limit's x-ratelimit-*).
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequest(TollwayError):
    status = 400
    openai_type = "invalid_request_error"


class Unauthorized(TollwayError):
    status = 401
    openai_type = "authentication_error"
    code = "invalid_api_key"


class InsufficientBalance(TollwayError):
    status = 402
    openai_type = "insufficient_quota"
    code = "insufficient_balance"
    should_retry = False


class Forbidden(TollwayError):
    status = 403
    openai_type = "permission_error"


class NotFound(TollwayError):
    status = 404
    openai_type = "not_found_error"
    code = "not_found"


class PayloadTooLarge(TollwayError):
    status = 413
    openai_type = "invalid_request_error"
    code = "request_too_large"


class BudgetExceeded(TollwayError):
    status = 429
    openai_type = "rate_limit_error"
    code = "budget_exceeded"
    should_retry = False


class RateLimited(TollwayError):
    """A rate limit is reached: 429 with Retry-After and OpenAI's x-ratelimit-* headers, so
    SDKs wait and retry (it succeeds once the window resets)."""

    status = 429
    openai_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers


class NoHealthyCandidate(TollwayError):
    """Every candidate's circuit is open: `retry_after_s` is when the first of them lets a
    trial through again."""

    status = 503
    openai_type = "server_error"
    code = "no_healthy_provider"

    def __init__(self, message: str, *, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class DatabaseUnavailable(TollwayError):
    """The database did not answer (connection refused or lost, shutting down, locked past
    the busy timeout): the request is refused before anything was charged; retry shortly."""

    status = 503
    openai_type = "server_error"
    code = "database_unavailable"
    retry_after_s = DEFAULT_RETRY_AFTER_S


class UpstreamFailure(TollwayError):
    """Every candidate failed; status is 502 (bad answer), 503 (unavailable) or 504 (timeout)."""

    openai_type = "server_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
        if status == 503:
            self.retry_after_s = DEFAULT_RETRY_AFTER_S


class ConfigError(Exception):
    """Invalid settings or registry found at start-up: printed as one line, exit status 2."""


class UpstreamRejected(TollwayError):
    """A non-retriable 4xx of the upstream (e.g. a validation error), returned as is."""

    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
