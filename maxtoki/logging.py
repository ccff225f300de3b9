"""Scanpy-style logging with timings: ``start = info(...)``, ``info("done", time=start)``."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from ._settings import settings

__all__ = ["debug", "error", "hint", "info", "warning"]


def _format_elapsed(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}:{int(minutes):02d}:{int(seconds):02d}"


def _log(
    level: int, msg: str, *, time: datetime | None = None, deep: str | None = None
) -> datetime:
    now = datetime.now()
    if settings.verbosity >= level:
        if time is not None:
            msg = f"{msg} ({_format_elapsed(now - time)})"
        if deep is not None and settings.verbosity >= 3:
            msg = f"{msg}\n    {deep}"
        print(msg, file=sys.stderr, flush=True)
    return now


def error(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at level 0 and return the current time."""
    return _log(0, f"ERROR: {msg}", time=time, deep=deep)


def warning(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at level 1 and return the current time."""
    return _log(1, f"WARNING: {msg}", time=time, deep=deep)


def info(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at level 2 and return the current time."""
    return _log(2, msg, time=time, deep=deep)


def hint(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at level 3 and return the current time."""
    return _log(3, f"--> {msg}", time=time, deep=deep)


def debug(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at level 4 and return the current time."""
    return _log(4, f"DEBUG: {msg}", time=time, deep=deep)
