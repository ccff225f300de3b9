"""The ``maxtoki`` command: ``demo``, ``train``, ``tokenize``, ``prompts``, ``predict``.

Each verb lives in its own module (``_cli_<verb>.py``) with one public function,
``register(subparsers)``, which adds its parser and the function that runs it. Errors a user can
fix (a missing file, a wrong option, a model without time tokens …) end the command with exit
status 1 and one line on stderr; ``--traceback`` shows the whole traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings

#: The verbs, in the order ``maxtoki --help`` lists them.
VERBS = ("demo", "train", "tokenize", "prompts", "predict")

# errors that come from the user's inputs: one line, exit status 1
_USER_ERRORS = (ValueError, TypeError, OSError, ImportError)
_GLOBAL_WITH_VALUE = ("--verbosity", "--n-jobs")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maxtoki`` console script and ``python -m maxtoki``.

    Parameters
    ----------
    argv
        The arguments after ``maxtoki``; ``None`` reads ``sys.argv``.

    Returns
    -------
    The exit status: 0 on success, 1 for an error in the inputs (one line on stderr), 2 for a
    command line that does not parse (argparse's usage message).
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = _parser()
    verb_at = _verb_position(argv)
    if argv[verb_at : verb_at + 1] == ["train"]:
        # the trainer's own parser handles its options, --help included
        args = parser.parse_args(argv[:verb_at])
        from .train import main as train_main

        return _run(args, "train", lambda: train_main(argv[verb_at + 1 :]))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return _run(args, args.command, lambda: args.func(args))


def _verb_position(argv: list[str]) -> int:
    """Index of the verb in ``argv`` (after the global options), or ``len(argv)``."""
    i = 0
    while i < len(argv):
        if argv[i] in _GLOBAL_WITH_VALUE:
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return i
    return len(argv)


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._cli_predict import register as register_predict
    from ._cli_prompts import register as register_prompts
    from ._cli_tokenize import register as register_tokenize

    parser = argparse.ArgumentParser(
        prog="maxtoki",
        description="MaxToki, the temporal single-cell foundation model, for scverse.",
        epilog="`maxtoki COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"maxtoki {__version__}")
    parser.add_argument(
        "--verbosity", type=int, choices=range(5), default=None, metavar="{0..4}",
        help="0 errors, 1 warnings, 2 info (default), 3 hints, 4 debug (mt.settings.verbosity)",
    )  # fmt: skip
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress bars, e.g. in cluster logs (mt.settings.progress = False)",
    )  # fmt: skip
    parser.add_argument(
        "--n-jobs", type=int, default=None,
        help="CPU threads for tokenizing (mt.settings.n_jobs; default: every core)",
    )  # fmt: skip
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="simulate the aging atlas, tokenize, train a small model, print the paper's table",
        description="End-to-end run on the embedded simulated aging atlas (CPU, minutes).",
    )
    demo.add_argument("--quick", action="store_true", help="a ~2-minute run with small settings")
    demo.add_argument(
        "--device", default="auto", help="torch device, e.g. cpu, cuda (default: auto)"
    )
    demo.add_argument(
        "--out", default="maxtoki_results", help="results folder (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)
    sub.add_parser(
        "train",
        help="train a model from a YAML config (torchrun-aware)",
        description="Train from a YAML config; extra key=value arguments override its fields.",
        add_help=False,
    )
    register_tokenize(sub)
    register_prompts(sub)
    register_predict(sub)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(quick=args.quick, device=args.device, out=args.out, seed=args.seed)
    return 0


def _run(args: argparse.Namespace, verb: str, run) -> int:
    """Run a verb under the global options; a user error becomes one line and exit status 1."""
    from ._settings import settings

    values = {}
    if args.verbosity is not None:
        values["verbosity"] = args.verbosity
    if args.no_progress:
        values["progress"] = False
    if args.n_jobs is not None:
        values["n_jobs"] = args.n_jobs
    try:
        with settings.override(**values), warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, verb)
            status = run()
    except _USER_ERRORS as e:
        if args.traceback:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"maxtoki {verb}: error: {message}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


def _show_warning(verb: str, message, category, *args, **kwargs) -> None:
    """A warning as one line (``maxtoki VERB: warning: …``), not Python's two-line format."""
    print(f"maxtoki {verb}: warning: {' '.join(str(message).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
