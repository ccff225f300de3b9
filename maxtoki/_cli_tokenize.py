"""``maxtoki tokenize``: .h5ad/.loom files → a token store (``mt.pp.tokenize_corpus``)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

_DESCRIPTION = """\
Tokenize raw counts into a memory-mapped token store (mt.pp.tokenize_corpus): the rank value
encoding of mt.pp.tokenize, file by file and chunk by chunk, with bounded memory.

The command is resumable: run it again with the same files and options after a crash or a
killed job, and it writes only the shards that are missing. Read the store with
mt.pp.TokenStore, build prompts with `maxtoki prompts`, train with `maxtoki train`
(`tokens: OUT_DIR`) or predict with `maxtoki predict`.
"""

_EPILOG = """\
examples:
  maxtoki tokenize donor1.h5ad donor2.h5ad -o store --vocab official-temporal \\
      --obs-keys age_months cell_type sex donor condition
  maxtoki tokenize data/ -o store --vocab model/      # every .h5ad/.loom in data/

.loom files are read with anndata.read_loom (needs loompy) and converted once into
OUT_DIR.loom-h5ad/ beside the store, which the store then reads.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tokenize`` verb to the ``maxtoki`` parser."""
    p = sub.add_parser(
        "tokenize",
        help="tokenize .h5ad/.loom files into a token store (resumable)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE",
        help=".h5ad or .loom files of raw counts (genes as Ensembl IDs), or folders of them",
    )  # fmt: skip
    p.add_argument("-o", "--out-dir", required=True, help="the token store folder (created)")
    p.add_argument(
        "--vocab", required=True,
        help="the model's vocabulary: a vocabulary folder, a model folder (save_pretrained "
        "output), 'official' or 'official-temporal' (the released v1 vocabularies)",
    )  # fmt: skip
    p.add_argument(
        "--max-len", type=int, default=4096,
        help="model input size: at most MAX_LEN - 2 genes per cell (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--obs-keys", nargs="*", default=[], metavar="KEY",
        help="obs columns to keep in the store (ages, groups, donors for prompts and predict)",
    )  # fmt: skip
    p.add_argument(
        "--chunk-size", type=int, default=10_000,
        help="cells per shard (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--gene-id-key", default=None,
        help="var column with Ensembl IDs (default: var['ensembl_id'], else the var names)",
    )  # fmt: skip
    p.add_argument("--layer", default=None, help="layer with raw counts (default: X)")
    p.add_argument(
        "--n-counts-key", default="n_counts",
        help="obs column with total counts; computed when absent (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--min-overlap", type=float, default=0.5,
        help="refuse a file when less than this share of its counts falls on vocabulary genes "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help="write the shards as tasks on the dask cluster at ADDRESS (e.g. tcp://head:8786; "
        "pip install 'maxtoki[dask]'); the files and OUT_DIR must be paths every worker sees "
        "(see docs/scaling.md)",
    )  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from . import logging as logg
    from ._cli_utils import connect, read_vocab
    from .pp import tokenize_corpus

    files = _expand(args.files)
    vocab = read_vocab(args.vocab)
    files = _convert_loom(files, Path(args.out_dir))
    client = connect(args.scheduler) if args.scheduler else contextlib.nullcontext()
    with client:
        store = tokenize_corpus(
            files, args.out_dir, vocab=vocab, max_len=args.max_len, obs_keys=args.obs_keys,
            chunk_size=args.chunk_size, gene_id_key=args.gene_id_key, layer=args.layer,
            n_counts_key=args.n_counts_key, min_overlap=args.min_overlap,
            client=client if args.scheduler else None,
        )  # fmt: skip
    logg.info(f"wrote {store!r}")
    return 0


def _expand(items: list[str]) -> list[Path]:
    """Files as given, folders replaced by their .h5ad/.loom files (sorted by name)."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in (".h5ad", ".loom"))
            if not found:
                raise FileNotFoundError(f"folder {item!r} holds no .h5ad or .loom file")
            files += found
        elif not p.is_file():
            raise FileNotFoundError(f"input file {item!r} does not exist")
        elif p.suffix not in (".h5ad", ".loom"):
            raise ValueError(f"input file {item!r} is neither .h5ad nor .loom")
        else:
            files.append(p)
    return files


def _convert_loom(files: list[Path], out_dir: Path) -> list[Path]:
    """.loom files converted once to .h5ad in ``OUT_DIR.loom-h5ad/`` (the same names reused)."""
    looms = [f for f in files if f.suffix == ".loom"]
    if not looms:
        return files
    from . import logging as logg
    from ._cli_utils import replace_atomically

    try:
        import loompy  # noqa: F401  (anndata.read_loom needs it)
    except ImportError:
        raise ImportError(
            "reading .loom files needs the optional `loompy` package: pip install loompy "
            "(or convert them with anndata.read_loom(...).write_h5ad(...))"
        ) from None
    import anndata as ad

    folder = out_dir.with_name(out_dir.name + ".loom-h5ad")
    folder.mkdir(parents=True, exist_ok=True)
    stems = [f.stem for f in looms]
    if len(set(stems)) != len(stems):
        raise ValueError("two .loom files share a name; rename one (they are converted by name)")
    out = []
    for f in files:
        if f.suffix != ".loom":
            out.append(f)
            continue
        target = folder / f"{f.stem}.h5ad"
        if not target.is_file():  # converted by an earlier (interrupted) run otherwise
            logg.info(f"converting {str(f)!r} to {str(target)!r}")
            tmp = target.with_name(f".{target.name}.tmp")
            ad.read_loom(f).write_h5ad(tmp)
            replace_atomically(tmp, target)
        out.append(target)
    return out
