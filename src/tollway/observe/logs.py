"""Logging set-up and the one line per request.

Every record goes to stderr, as logfmt-style text (``key=value``) or as one JSON object per
line (``TOLLWAY_LOG_FORMAT=json``). Structured fields travel on the record's ``fields``
attribute (a dict built once per request); the formatters render them, nothing else does.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

FIELDS = "fields"
_MAX_VALUE = 300  # longest value a text line carries (errors, paths)
_NEEDS_QUOTES = re.compile(r'[\s"=\\\x00-\x1f\x7f]')
# Control characters a client can put in a value (a model name, a path): written escaped, so
# a log line stays one line and no terminal escape sequence reaches an operator's terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped_control(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text_value(value: Any) -> str:
    if type(value) is int:  # the common case: no quoting to decide
        return str(value)
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_VALUE:
        text = text[:_MAX_VALUE] + "…"
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(_escaped_control, escaped) + '"'


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message> key=value …`` (values with spaces are quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        message = _CONTROL.sub(_escaped_control, record.getMessage())
        line = f"{_timestamp(record)} {record.levelname} {record.name} {message}"
        fields: dict[str, Any] | None = getattr(record, FIELDS, None)
        if fields:
            line += " " + " ".join(
                f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None
            )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, FIELDS, None)
        if fields:
            entry.update((k, v) for k, v in fields.items() if v is not None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for the gateway and uvicorn (which applies it
    in every worker process). Uvicorn's access log is off: the request line replaces it."""
    formatter = (
        "tollway.observe.logs.JsonFormatter"
        if fmt == "json"
        else ("tollway.observe.logs.TextFormatter")
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tollway": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "tollway",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "tollway": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
