from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maxtoki`` console script (``maxtoki --help``)."""
    from . import __version__

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # the trainer's own parser handles its options, --help included
        from .train import main as train_main

        return train_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="maxtoki",
        description="MaxToki, the temporal single-cell foundation model, for scverse.",
    )
    parser.add_argument("--version", action="version", version=f"maxtoki {__version__}")
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

    sub.add_parser(
        "train",
        help="train a model from a YAML config (torchrun-aware)",
        description="Train from a YAML config; extra key=value arguments override its fields.",
    )

    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(quick=args.quick, device=args.device, out=args.out, seed=args.seed)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
