"""Scanpy-style logging with timings, built on Python's :mod:`logging`.

``start = info("tokenizing")`` … ``info("finished", time=start)`` logs "finished (1.23s)".

Records go to the ``maxtoki`` logger, or to a child logger named after the calling module
(``maxtoki.pp._tokenize``), so they can be routed like any other library's:

- ``mt.settings.verbosity`` (0 error, 1 warning, 2 info, 3 hint, 4 debug) sets the level of the
  ``maxtoki`` logger; ``logging.getLogger("maxtoki").setLevel(...)`` is read back by it.
- A default handler, :data:`handler`, prints to ``sys.stderr`` (looked up at each record, so
  redirections such as pytest's ``capsys`` and Jupyter's streams see the lines). It is attached to
  the ``maxtoki`` logger only, never to the root logger.
- Records propagate to the root logger, so ``caplog`` and the handlers an application configures
  receive them. Once the root logger has a handler of its own (e.g. after
  :func:`logging.basicConfig`), the default handler stands aside so that no line is printed twice;
  pytest's capturing handlers do not count. Remove it for good with
  ``logging.getLogger("maxtoki").removeHandler(mt.logging.handler)``.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta

__all__ = [
    "HINT",
    "debug",
    "error",
    "handler",
    "hint",
    "info",
    "logger",
    "print_versions",
    "warning",
]

#: Level of :func:`hint` lines, between ``logging.DEBUG`` and ``logging.INFO`` (as in scanpy).
HINT = 15
logging.addLevelName(HINT, "HINT")

#: The package logger; child loggers (``maxtoki.<module>``) propagate to it.
logger = logging.getLogger("maxtoki")

_PREFIX = {
    logging.ERROR: "ERROR: ",
    logging.WARNING: "WARNING: ",
    HINT: "--> ",
    logging.DEBUG: "DEBUG: ",
}


class _Formatter(logging.Formatter):
    """The message with scanpy's level prefix (``WARNING: ``, ``--> `` …), nothing else."""

    def format(self, record: logging.LogRecord) -> str:
        return _PREFIX.get(record.levelno, "") + super().format(record)


def _root_prints() -> bool:
    """Whether the root logger has an output handler an application configured."""
    for root_handler in logging.getLogger().handlers:
        if isinstance(root_handler, logging.NullHandler):
            continue
        if type(root_handler).__module__.startswith("_pytest"):
            continue  # caplog and pytest's report capture: they record, they do not print
        return True
    return False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # StreamHandler's attribute, resolved at each record
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if logger.propagate and _root_prints():
            return
        tqdm = sys.modules.get("tqdm")
        if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
            try:  # a progress bar is showing: write above it instead of through it
                tqdm.tqdm.write(self.format(record), file=sys.stderr)
            except Exception:
                self.handleError(record)
            return
        super().emit(record)


#: The default handler of the ``maxtoki`` logger (stderr, scanpy's prefixes).
handler = _StderrHandler()
handler.setFormatter(_Formatter("%(message)s"))
if not any(isinstance(h, _StderrHandler) for h in logger.handlers):  # re-imports add no second
    logger.addHandler(handler)
logger.propagate = True

from ._settings import settings  # noqa: E402 - sets the logger's level, so after `logger`


def _format_elapsed(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}:{int(minutes):02d}:{int(seconds):02d}"


def _caller_logger() -> logging.Logger:
    """``maxtoki.<module>`` for a call from inside the package, else the ``maxtoki`` logger."""
    name = sys._getframe(3).f_globals.get("__name__", "")
    return logging.getLogger(name) if name.startswith("maxtoki.") else logger


def _log(level: int, msg: str, *, time: datetime | None, deep: str | None) -> datetime:
    now = datetime.now()
    target = _caller_logger()
    if target.isEnabledFor(level):
        elapsed = None if time is None else now - time
        if elapsed is not None:
            msg = f"{msg} ({_format_elapsed(elapsed)})"
        if deep is not None and settings.verbosity >= 3:
            msg = f"{msg}\n    {deep}"
        # stacklevel 3: the record names the function that called info()/warning()/…
        target.log(level, msg, extra={"time_passed": elapsed, "deep": deep}, stacklevel=3)
    return now


def error(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at error level (verbosity 0) and return the current time."""
    return _log(logging.ERROR, msg, time=time, deep=deep)


def warning(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at warning level (verbosity 1) and return the current time."""
    return _log(logging.WARNING, msg, time=time, deep=deep)


def info(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at info level (verbosity 2) and return the current time.

    Parameters
    ----------
    msg
        The line to log.
    time
        A time returned by an earlier call: the elapsed time is appended, ``"done (1.23s)"``.
    deep
        Detail shown on a second line at hint verbosity (3) and above.
    """
    return _log(logging.INFO, msg, time=time, deep=deep)


def hint(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at hint level (verbosity 3, :data:`HINT`) and return the current time."""
    return _log(HINT, msg, time=time, deep=deep)


def debug(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at debug level (verbosity 4) and return the current time."""
    return _log(logging.DEBUG, msg, time=time, deep=deep)


def print_versions(*, file=None) -> None:
    """Print what results are computed with, one ``name  version`` line each (as scanpy's).

    Python, the platform and CPU, torch with the instruction set of its CPU kernels, its threads
    and CUDA, and the versions of maxtoki's dependencies and extras. The same seed can train a
    different model on another CPU, so quote these lines with a result. The same values are in
    every ``maxtoki demo`` results folder (``summary.json``, ``"environment"``).

    Parameters
    ----------
    file
        Where to print (default ``sys.stdout``).
    """
    from ._versions import versions

    found = versions()
    width = max(map(len, found))
    for name, value in found.items():
        print(f"{name:<{width}}  {value}", file=file or sys.stdout)


def _progress_bar(total: int, *, desc: str, unit: str = "cell", show: bool = True):
    """A tqdm bar (internal), shown when ``show`` and ``mt.settings.show_progress`` allow.

    Callers pass ``show=False`` for inputs too small to be worth a bar (a single chunk). The bar
    writes to ``sys.stderr`` and is cleared when done (``leave=False``); log lines written while
    it shows go above it.
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=total >= 100_000,  # "1.2M/3.4M cells"; small counts as they are
        leave=False,
        file=sys.stderr,
        disable=not (show and settings.show_progress and total > 0),
    )
