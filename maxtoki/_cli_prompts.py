"""``maxtoki prompts``: an AnnData or a token store → a prompt table (``mt.pp.trajectories``)."""

from __future__ import annotations

import argparse
from pathlib import Path

_DESCRIPTION = """\
Build a table of temporal prompts (mt.pp.trajectories): trajectories of context cells of one
group, the timelapses between them, and a query cell. The table names cells by their obs names
and is written as CSV, the format mt.train.read_prompts and `maxtoki train` (`prompts:`) read.

INPUT is an .h5ad file (only its obs is read) or a token store from `maxtoki tokenize`, whose
stored obs columns (--obs-keys there) must include the time and group columns.
"""

_EPILOG = """\
examples:
  maxtoki prompts store/ -o prompts.csv --holdout cell_type=fibroblast
  maxtoki prompts atlas.h5ad -o prompts.csv --groupby cell_type --n-context 2 \\
      --task TimeBetweenCells
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prompts`` verb to the ``maxtoki`` parser."""
    p = sub.add_parser(
        "prompts",
        help="build a prompt table (CSV) from an .h5ad file or a token store",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="an .h5ad file or a token store folder")
    p.add_argument("-o", "--out", required=True, help="the prompt table to write (.csv)")
    p.add_argument(
        "--time-key", default="age_months",
        help="obs column with each cell's time in months (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--groupby", nargs="*", default=["cell_type", "sex"], metavar="KEY",
        help="obs columns whose combination is a trajectory's group; none: one group "
        "(default: cell_type sex)",
    )  # fmt: skip
    p.add_argument(
        "--n-context", type=int, nargs="+", default=[2, 3], metavar="N",
        help="context cells per prompt: N, or MIN MAX drawn per prompt (default: 2 3)",
    )  # fmt: skip
    p.add_argument(
        "--n-prompts", type=int, default=None,
        help="training prompts (default: as many as training cells)",
    )  # fmt: skip
    p.add_argument(
        "--task", nargs="+", default=["TimeBetweenCells", "NextCell"],
        choices=["TimeBetweenCells", "NextCell"], help="the tasks (default: both)",
    )  # fmt: skip
    p.add_argument(
        "--task-mix", type=float, default=0.5,
        help="share of TimeBetweenCells prompts with both tasks (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--holdout", action="append", metavar="KEY=VALUE[,VALUE…]",
        help="cells kept out of training (eval prompts' queries); repeat to require several "
        "columns, e.g. --holdout cell_type=fibroblast",
    )  # fmt: skip
    p.add_argument(
        "--exclude-times", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
        help="held-out ages: an inclusive range of months",
    )  # fmt: skip
    p.add_argument(
        "--sort-context", action="store_true",
        help="context cells sorted by time (default: random order, as the official sampler)",
    )  # fmt: skip
    p.add_argument(
        "--no-same-time", dest="allow_same_time", action="store_false",
        help="the query never shares a context cell's time point",
    )  # fmt: skip
    p.add_argument(
        "--query-sampling", choices=["time_points", "cells"], default="time_points",
        help="how a prompt picks its query in its group (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--group-balance", type=_optional_float, default=0.1,
        help="smoothing of the group draw, 0 (by size) … 1 (uniform), or 'none' "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--random-state", type=int, default=0, help="seed of the sampler (default: %(default)s)"
    )
    p.add_argument(
        "--time-range", type=int, nargs=2, default=[-1500, 1499], metavar=("MIN", "MAX"),
        help="month range of the model's time tokens (default: -1500 1499)",
    )  # fmt: skip
    p.set_defaults(func=_run)


def _optional_float(value: str) -> float | None:
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {value!r}") from None


def _run(args: argparse.Namespace) -> int:
    from anndata import AnnData

    from . import logging as logg
    from ._cli_utils import check_input, parse_holdout, read_obs, replace_atomically
    from .pp import trajectories

    out = Path(args.out)
    if ".csv" not in out.suffixes:
        raise ValueError(
            f"--out {args.out!r}: the prompt table is written as CSV (what "
            "mt.train.read_prompts reads); give it a .csv name"
        )
    kind = check_input(args.input)
    obs = read_obs(args.input)
    if not obs.index.is_unique:
        raise ValueError(
            f"the cell names of {args.input!r} are not unique (e.g. the same obs name in two "
            "files); prompts name cells, so make obs names unique before tokenizing"
        )
    needed = [args.time_key, *args.groupby]
    missing = [k for k in needed if k not in obs.columns]
    if missing:
        fix = " (tokenize with --obs-keys naming them)" if kind == "store" else ""
        raise ValueError(f"{args.input!r} has no obs column(s) {missing}{fix}")
    if len(args.n_context) > 2:
        raise ValueError(f"--n-context takes N or MIN MAX, got {args.n_context}")
    df = trajectories(
        AnnData(obs=obs),
        time_key=args.time_key,
        groupby=args.groupby or None,
        n_context=args.n_context[0] if len(args.n_context) == 1 else tuple(args.n_context),
        n_prompts=args.n_prompts,
        task=args.task,
        task_mix=args.task_mix,
        holdout=parse_holdout(args.holdout, obs),
        exclude_times=None if args.exclude_times is None else tuple(args.exclude_times),
        sort_context=args.sort_context,
        allow_same_time=args.allow_same_time,
        query_sampling=args.query_sampling,
        group_balance=args.group_balance,
        random_state=args.random_state,
        time_range=tuple(args.time_range),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")  # same suffixes: same compression
    df.to_csv(tmp, index=False)
    replace_atomically(tmp, out)
    logg.info(f"wrote {len(df):,} prompts to {str(out)!r}")
    return 0
