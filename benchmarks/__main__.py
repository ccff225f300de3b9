"""Run the benchmark suite: ``python -m benchmarks [all | NAME …] [--quick]``.

Every benchmark module exposes ``run(quick: bool = False) -> list[dict]`` whose rows hold
``benchmark``, ``setting``, ``ours``, ``baseline``, ``unit`` and ``ratio`` (how many times better
than the baseline, > 1 is better). Results go to ``benchmarks/results/latest.json`` and
``benchmarks/results/latest.md`` with a description of the machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "tokenize", "training_throughput", "generation", "predict_time", "mfu", "gpu_speed",
    "training_curve",
)
RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line describing this machine."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def torch_threads() -> int:
    """The number of torch CPU threads this run uses."""
    import torch

    return torch.get_num_threads()


def to_markdown(rows: list[dict]) -> str:
    """Render benchmark rows as a markdown table."""
    lines = [
        "| benchmark | setting | ours | baseline | unit | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [_fmt(r.get(k)) for k in ("benchmark", "setting", "ours", "baseline", "unit")]
        ratio = r.get("ratio")
        cells.append(f"{ratio:.1f}×" if isinstance(ratio, (int, float)) else _fmt(ratio))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def run_one(
    run, description: str, argv: list[str] | None = None, *, threads: int | None = None
) -> int:
    """Command line of one benchmark module: ``--quick``, ``--threads``; prints its table."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    rows = run(quick=args.quick)
    print(to_markdown(rows))
    for row in rows:
        if row.get("note"):
            print(f"- {row['setting']}: {row['note']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks and write the JSON and markdown results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", default=["all"], help=f"all or some of {BENCHMARKS}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    args = parser.parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = BENCHMARKS if args.names in ([], ["all"]) else args.names
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {BENCHMARKS}")
    n = torch_threads()  # before the runs: rows that compare thread counts set their own
    rows: list[dict] = []
    for name in names:
        start = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        torch.set_num_threads(n)  # whatever the previous benchmark left
        module = importlib.import_module(f"benchmarks.{name}")
        rows += module.run(quick=args.quick)
        print(f"   {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    kind = "quick" if args.quick else "full"
    today = time.strftime("%Y-%m-%d")
    for row in rows:
        row["date"] = today
    suffix = "_quick" if args.quick else ""
    rows, dates = _with_earlier_rows(rows, RESULTS / f"latest{suffix}.json", names)
    threads = f"{n} torch thread{'' if n == 1 else 's'} unless a row says otherwise"
    header = f"Machine: {machine()}; {kind} run, {threads}, {dates}."
    table = to_markdown(rows)
    (RESULTS / f"latest{suffix}.json").write_text(
        json.dumps({"machine": machine(), "quick": args.quick, "rows": rows}, indent=1, default=str)
    )
    (RESULTS / f"latest{suffix}.md").write_text(f"{header}\n\n{table}\n")
    print(f"{header}\n\n{table}")
    return 0


def _with_earlier_rows(rows: list[dict], path: Path, names) -> tuple[list[dict], str]:
    """Rows of a partial run merged with the other benchmarks' rows of the last results file.

    Only rows of the same machine are kept (``path``'s ``machine``); rows in ``BENCHMARKS``
    order. Also returns the dates of the merged rows, in words, for the header.
    """
    earlier = json.loads(path.read_text()) if path.exists() else {}
    if set(names) != set(BENCHMARKS) and earlier.get("machine") == machine():
        kept = [r for r in earlier["rows"] if r["benchmark"] not in names]
        rows = sorted(kept + rows, key=lambda r: BENCHMARKS.index(r["benchmark"]))
    by_date: dict[str, list[str]] = {}
    for row in rows:
        names_then = by_date.setdefault(row.get("date", "undated"), [])
        if row["benchmark"] not in names_then:
            names_then.append(row["benchmark"])
    if len(by_date) == 1:
        return rows, next(iter(by_date))
    return rows, "; ".join(f"{', '.join(b)} {date}" for date, b in sorted(by_date.items()))


if __name__ == "__main__":
    sys.exit(main())
