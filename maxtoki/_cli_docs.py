"""The help text of ``maxtoki`` and of each verb, written for the documentation (private)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path


def write_cli_help(folder: str | os.PathLike, *, width: int = 100) -> list[Path]:
    """Write ``cli_maxtoki.txt`` and ``cli_<verb>.txt`` (``--help`` output) into ``folder``.

    ``docs/conf.py`` calls it at every build, so ``docs/api.md`` shows the parser's own text.

    Returns
    -------
    The files written.
    """
    from ._cli import VERBS, main

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal's width
    try:
        for name, argv in [("maxtoki", ["--help"])] + [(v, [v, "--help"]) for v in VERBS]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(argv)
            path = folder / f"cli_{name}.txt"
            path.write_text(out.getvalue())
            written.append(path)
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return written
