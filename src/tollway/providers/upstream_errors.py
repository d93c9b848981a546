"""What can go wrong with an upstream, as one small tree the router understands (retriable
or not, and the status the client gets), and how pyreqwest's exceptions become it: at the
seam, in `translated`. Client-facing messages name the provider's slug and what happened,
never an address or an exception class; the full reason is logged (logger
``tollway.upstream``, like the client's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from pyreqwest import exceptions as rq

from tollway.providers.redact import Redactor
from tollway.providers.registry import Provider

log = logging.getLogger("tollway.upstream")

# What an upstream failure becomes for the client (docs/gateway.md, "Upstream errors"):
# nothing reached the provider → 503; the provider took too long → 504; the provider was
# reached but its answer was broken, an error or unusable → 502.
LOGGED_BODY_BYTES = 500


class UpstreamError(Exception):
    """An attempt at one endpoint failed; ``message`` is safe to show a client."""

    retriable = True
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnavailable(UpstreamError):
    """No connection could be made (refused, DNS, TLS handshake): nothing was sent."""

    status = 503


class UpstreamDisconnected(UpstreamError):
    """The connection was reset or closed before the answer was complete."""

    status = 502


# The client's own request was invalid: returned as is, trying elsewhere would not help.
# Every other error status (401/403: our credentials; 404: the upstream model id; 408, 429,
# 5xx) is the provider's problem, so the next candidate is tried.
VALIDATION_STATUSES = frozenset({400, 413, 415, 422})


def client_status(upstream_status: int) -> int:
    """The status a client gets when an upstream's error status was the last failure:
    overloaded or unavailable → 503, timed out → 504, anything else → 502 (a provider's 500
    is not the gateway's)."""
    if upstream_status in (429, 503):
        return 503
    if upstream_status in (408, 504):
        return 504
    return 502


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status. `body` is already redacted (it may be
    relayed to the client as is)."""

    def __init__(self, status: int, body: bytes, provider: str) -> None:
        self.upstream_status = status
        self.body = body
        self.retriable = status not in VALIDATION_STATUSES
        if status in (401, 403):
            # Never relay what a provider says about our credentials (it may echo the key).
            message = f"{provider}: the provider rejected the gateway's credentials"
        elif not self.retriable:
            # The client's own mistake: the upstream's words are what the client needs
            # (redacted with the body: a provider that echoes the request echoes our key).
            message = f"{provider}: upstream answered {status}: {_error_message(body)}"
        elif status == 429:
            message = f"{provider}: upstream answered 429 (rate limited)"
        else:
            # The detail of a provider's own failure (stack traces, internal hosts) is logged.
            message = f"{provider}: upstream answered {status}"
        super().__init__(message)
        self.status = status if not self.retriable else client_status(status)


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:200]
        if isinstance(err, str):
            return err[:200]
    return body[:200].decode("utf-8", "replace")


def status_error(
    provider: Provider, status: int, body: bytes, redactor: Redactor
) -> UpstreamStatusError:
    body = redactor.error_body(body)
    error = UpstreamStatusError(status, body, provider.slug)
    if status in (401, 403):
        detail = "(body not logged: it may echo the credentials)"
    else:
        detail = body[:LOGGED_BODY_BYTES].decode("utf-8", "replace")
    level = logging.INFO if not error.retriable else logging.WARNING
    log.log(level, "upstream %s answered %d: %s", provider.slug, status, detail)
    return error


def malformed_answer(provider: Provider, reason: str) -> UpstreamError:
    """A 2xx answer the gateway cannot use (not JSON, no data, …): logged, 502."""
    log.warning("upstream %s: malformed answer: %s", provider.slug, reason)
    return UpstreamError(f"{provider.slug}: malformed answer: {reason}")


def ended_early(provider: Provider) -> UpstreamError:
    """A stream that closed cleanly before ``[DONE]``: logged, 502."""
    log.warning("upstream %s: the stream closed before [DONE]", provider.slug)
    return UpstreamDisconnected(f"{provider.slug}: stream ended early")


def too_long(provider: Provider, max_s: float) -> UpstreamError:
    log.warning("upstream %s: the stream ran past the %g s cap; cut", provider.slug, max_s)
    return UpstreamTimeout(f"{provider.slug}: stream exceeded the {max_s:g} s duration cap")


class UpstreamTooLarge(UpstreamError):
    """The answer is larger than the cap (possibly what the request asked for)."""


def too_large(provider: Provider, max_bytes: int) -> UpstreamError:
    log.warning("upstream %s: an answer larger than %d bytes; refused", provider.slug, max_bytes)
    return UpstreamTooLarge(f"{provider.slug}: answer larger than the {max_bytes}-byte cap")


# How hyper words a connection that ended early (pyreqwest's exceptions carry hyper's causes;
# it files some of them under ConnectError). Before any byte of an answer:
_BEFORE_ANSWER = ("connection closed before message completed", "connection reset", "broken pipe")
# ... and anywhere, the body included:
_LOST = (
    *_BEFORE_ANSWER,
    "error reading a body from connection",
    "end of file before message length reached",
    "unexpected eof",
)


def hung_up(exc: BaseException) -> bool:
    """Whether the connection closed before any byte of an answer: the request may be sent
    again (the provider cannot have answered it)."""
    text = str(exc).lower()
    return "body from connection" not in text and any(w in text for w in _BEFORE_ANSWER)


def _lost(exc: BaseException) -> bool:
    """Whether the connection closed before the answer was complete."""
    text = str(exc).lower()
    return any(words in text for words in _LOST)


@contextmanager
def translated(provider: Provider, redactor: Redactor) -> Iterator[None]:
    """Translate pyreqwest's exceptions into the UpstreamError tree: the client's message
    says what happened; the log line says how (the exception, with the address)."""
    try:
        yield
    except TimeoutError as exc:  # pyreqwest's timeouts (connect, read, total) included
        raise _logged(UpstreamTimeout, provider, "timed out", exc, redactor) from exc
    except rq.PyreqwestError as exc:
        network = isinstance(exc, rq.NetworkError)
        if _lost(exc) or (network and not isinstance(exc, rq.ConnectError)):
            lost = "connection lost before the answer was complete"
            raise _logged(UpstreamDisconnected, provider, lost, exc, redactor) from exc
        if network:  # a ConnectError that lost nothing: refused, DNS, TLS; nothing was sent
            raise _logged(UpstreamUnavailable, provider, "cannot connect", exc, redactor) from exc
        # e.g. an invalid HTTP answer, or a body that does not decode
        raise _logged(UpstreamError, provider, "malformed answer", exc, redactor) from exc


def _logged(
    kind: type[UpstreamError],
    provider: Provider,
    what: str,
    exc: BaseException,
    redactor: Redactor,
) -> UpstreamError:
    # An invalid answer's text may quote what the upstream sent: redacted like its bodies.
    reason = redactor.text(f"{exc.__class__.__name__}: {exc}")
    log.warning("upstream %s: %s: %s", provider.slug, what, reason)
    return kind(f"{provider.slug}: {what}")
