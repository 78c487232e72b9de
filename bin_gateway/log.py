"""structlog set-up: JSON lines off a terminal, readable lines on one.

Called from the CLI only, never at import: modules take a logger with
``structlog.get_logger("bin_gateway.<module>")`` (or :func:`get_logger`) at import time,
and the lazy proxy picks up whatever :func:`configure_logging` set later.

Event names are dotted facts in the past tense, details are key/value fields::

    log = get_logger(__name__)
    log.info("message.accepted", route="post", size=5120)

Every line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``event``, ``logger`` and
whatever was bound with ``structlog.contextvars.bind_contextvars``. Loggers are not
cached, so reconfiguring (a test, a changed level) reaches every module at once.

Records of the standard ``logging`` module (aiosmtpd, aiosqlite, asyncio) are rendered
the same way but only from WARNING up, whatever the level: aiosmtpd logs every SMTP
command at DEBUG, which would put members' addresses into the log of the reply flow.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["configure_logging", "get_logger"]

_FOREIGN_MIN_LEVEL = logging.WARNING
_write_lock = threading.Lock()  # one line at a time, also from asyncio.to_thread workers


class _LineLogger:
    """Writes each rendered event as one line; ``stream=None`` means sys.stdout at the time."""

    def __init__(self, name: str, stream: TextIO | None) -> None:
        self.name = name
        self._stream = stream

    def msg(self, message: str) -> None:
        stream = self._stream or sys.stdout
        with _write_lock:
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _LineLoggerFactory:
    """structlog's logger factory: ``get_logger("name")`` passes the name on to us."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _LineLogger:
        name = args[0] if args and isinstance(args[0], str) else ""
        return _LineLogger(name, self._stream)


class _StdlibHandler(logging.Handler):
    """Hands ``logging`` records to the same stream as structlog's own lines."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            _LineLogger(record.name, self._stream).msg(line)
        except Exception:
            self.handleError(record)


# Tracebacks as data, without local variables: they would hold message bodies and addresses.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)
_FIRST_KEYS = ("timestamp", "level", "event", "logger")


def _key_order(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, event and logger first, so a JSON line reads left to right."""
    first = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    return {**first, **event_dict}


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", "")
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    return number


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object
        return False


def configure_logging(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Set up structlog (and the ``logging`` bridge) for this process.

    ``json``: None decides by the stream (JSON unless it is a terminal). ``level``:
    debug, info, warning or error. ``stream``: where lines go; None = sys.stdout (the
    daemon's choice, for the journal); the admin commands pass sys.stderr so their logs
    never mix with output meant for a pipe, such as ``members export``.
    """
    number = _level_number(level)
    target = stream or sys.stdout
    as_json = not _is_tty(target) if json is None else json
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        shared += [structlog.processors.StackInfoRenderer(), _TRACEBACKS, _key_order]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_tty(target), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=_LineLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib(shared, renderer, stream, max(number, _FOREIGN_MIN_LEVEL))


def _bridge_stdlib(
    shared: list[Processor], renderer: Processor, stream: TextIO | None, level: int
) -> None:
    """Route ``logging`` records through the same processors; replaces an earlier bridge."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    handler = _StdlibHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger; ``name`` (e.g. ``__name__``) appears as the ``logger`` field."""
    logger = structlog.get_logger(name) if name else structlog.get_logger()
    return cast(FilteringBoundLogger, logger)
