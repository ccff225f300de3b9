"""``maxtoki predict``: a token store or an .h5ad file + a model → ages and/or embeddings."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

_DESCRIPTION = """\
Predict each cell's age (mt.tl.predict_time) and/or embed it (mt.tl.embed) with a saved model,
shard by shard, and write one table: OUT_DIR/predictions.parquet (or .h5ad).

INPUT is a token store from `maxtoki tokenize` (tokenized with the model's vocabulary; its stored
obs columns must include the time, group and reference columns for ages) or an .h5ad file (raw
counts are tokenized with the model's vocabulary; tokens already in obsm[--tokens-key] are used).

Shards: the cells are cut into shards of --shard-size cells. Shard k is predicted as
mt.tl.predict_time(shard, context=<the input's reference cells>, random_state=RANDOM_STATE + k)
(contexts never include the query cell itself nor, with --donor-key, its donor), so with one shard
the ages equal those of mt.tl.predict_time on the whole input. Each finished shard is written to
OUT_DIR/shards/ at once; a killed job, run again with the same options, computes only the missing
shards. With --scheduler, each shard is a task on a dask cluster: a worker loads the model from
--model and writes its shard file (temporary name, then rename); a killed worker's shard is
computed again on another worker, with the same result.
"""

_EPILOG = """\
output columns: obs_name, source_file (token stores), {key}_age, {key}_timelapse, {key}_age_std
(months; --what ages), X_{key}_0 … (--what embeddings; obsm['X_{key}'] in .h5ad), the --obs-keys.

examples:
  maxtoki predict store/ --model run/model -o predictions/ --obs-keys age_months cell_type
  maxtoki predict atlas.h5ad --model run/model -o emb/ --what embeddings --format h5ad
"""

MANIFEST = "predict.json"
_FORMAT = "maxtoki-predictions"
_CELL_KEY = "_maxtoki_cell"  # a per-cell "donor": keeps a query out of its own contexts


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb to the ``maxtoki`` parser."""
    p = sub.add_parser(
        "predict",
        help="predict ages and/or embeddings of a token store or .h5ad file (resumable)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="a token store folder or an .h5ad file")
    p.add_argument(
        "--model", required=True,
        help="the model: a folder (save_pretrained output, with its vocabulary) or a Hub repo id",
    )  # fmt: skip
    p.add_argument("-o", "--out-dir", required=True, help="output folder (created; resumable)")
    p.add_argument(
        "--what", nargs="+", choices=["ages", "embeddings"], default=["ages"],
        help="what to predict (default: ages)",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=["parquet", "h5ad"], default="parquet",
        help="format of OUT_DIR/predictions.* (default: %(default)s; parquet needs pyarrow)",
    )  # fmt: skip
    p.add_argument(
        "--shard-size", type=int, default=10_000, help="cells per shard (default: %(default)s)"
    )
    p.add_argument(
        "--obs-keys", nargs="*", default=[], metavar="KEY",
        help="input obs columns copied into the output (e.g. true ages for evaluation)",
    )  # fmt: skip
    g = p.add_argument_group("ages (mt.tl.predict_time)")
    g.add_argument(
        "--reference-key", type=_optional_str, default="condition",
        help="obs column that marks reference cells; 'none': every cell with a known time "
        "(default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--reference", nargs="+", default=["control"],
        help="value(s) of --reference-key of the reference cells (default: control)",
    )  # fmt: skip
    g.add_argument(
        "--time-key", default="age_months",
        help="obs column with the reference cells' ages in months (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--groupby", nargs="*", default=["cell_type", "sex"], metavar="KEY",
        help="obs columns whose combination picks a cell's context cells (default: cell_type sex)",
    )  # fmt: skip
    g.add_argument(
        "--donor-key", type=_optional_str, default="donor",
        help="obs column of donors: context cells never come from the cell's donor; 'none' to "
        "allow them (default: %(default)s)",
    )  # fmt: skip
    g.add_argument("--n-contexts", type=int, default=5, help="contexts per cell (default: 5)")
    g.add_argument("--n-context-cells", type=int, default=2, help="cells per context (default: 2)")
    g.add_argument(
        "--aggregate", choices=["median", "mean"], default="median",
        help="aggregate over contexts (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--random-state", type=int, default=0,
        help="seed of the context draw; shard k uses RANDOM_STATE + k (default: %(default)s)",
    )  # fmt: skip
    e = p.add_argument_group("embeddings (mt.tl.embed)")
    e.add_argument(
        "--emb-layer", default="last",
        help="'last', 'penultimate', 'embeddings' or a layer index ≥ 0 (default: %(default)s)",
    )  # fmt: skip
    e.add_argument(
        "--emb-mode", choices=["cell", "eos"], default="cell",
        help="mean over gene tokens ('cell') or the <eos> state (default: %(default)s)",
    )  # fmt: skip
    r = p.add_argument_group("tokens and running")
    r.add_argument(
        "--max-genes", type=int, default=None,
        help="top-ranked genes per cell (default: the model's max_genes_per_cell)",
    )  # fmt: skip
    r.add_argument(
        "--tokens-key", default="maxtoki_tokens",
        help=".h5ad input: obsm key of existing tokens (default: %(default)s)",
    )  # fmt: skip
    r.add_argument(
        "--gene-id-key", default=None, help=".h5ad input without tokens: var column of Ensembl IDs"
    )
    r.add_argument("--layer", default=None, help=".h5ad input without tokens: raw-count layer")
    r.add_argument(
        "--key-added", default="maxtoki", help="prefix of the output columns (default: maxtoki)"
    )
    r.add_argument("--batch-size", type=int, default=None, help="prompts per forward pass")
    r.add_argument("--device", default=None, help="torch device (default: mt.settings.device)")
    r.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32", "float64"], default=None,
        help="inference precision (mt.settings.dtype; default 'auto': bfloat16 autocast on CUDA, "
        "the weights' dtype on the CPU)",
    )  # fmt: skip
    r.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help="run the shards as tasks on the dask cluster at ADDRESS (e.g. tcp://head:8786; "
        "pip install 'maxtoki[dask]'); INPUT, --model and OUT_DIR must be paths every worker "
        "sees (see docs/scaling.md)",
    )  # fmt: skip
    p.set_defaults(func=_run)


def _optional_str(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _run(args: argparse.Namespace) -> int:
    from . import logging as logg
    from ._cli_utils import check_input

    kind = check_input(args.input)
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}")
    if args.format == "parquet":
        _require_pyarrow()
    out = Path(args.out_dir)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ValueError(f"{str(out)!r} exists and is not a predict output folder; use a new one")
    model = _load_model(args)
    source = _Source(args.input, kind, model, args)
    ref = _reference(source, args) if "ages" in args.what else None
    params = _params(args, kind, source, model)
    _open_output(out, params)
    bounds = [(lo, min(lo + args.shard_size, source.n_obs))
              for lo in range(0, source.n_obs, args.shard_size)]  # fmt: skip
    shards = out / "shards"
    todo = [k for k in range(len(bounds)) if not _shard_file(shards, k).is_file()]
    start = logg.info(
        f"predicting {', '.join(args.what)} of {source.n_obs:,} cells in {len(bounds)} shard(s): "
        f"{len(bounds) - len(todo)} already written, {len(todo)} to compute"
    )
    _check_obs_keys(source, args)
    if args.scheduler is None:
        _compute(todo, bounds, shards, source, ref, model, args)
    else:
        _compute_on_cluster(todo, bounds, shards, args)
    final = _combine(out, len(bounds), args.format)
    logg.info(f"wrote {str(final)!r}", time=start)
    return 0


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            "--format parquet needs the `pyarrow` package: pip install 'maxtoki[parquet]' "
            "(or pip install pyarrow), or pass --format h5ad"
        ) from None


def _load_model(args: argparse.Namespace):
    from .models import MaxToki

    model = MaxToki.from_pretrained(args.model, device=args.device)
    if model.vocab is None:
        raise ValueError(
            f"the model {args.model!r} carries no vocabulary (no token_dictionary.json beside "
            "its weights); save it with the vocabulary attached (model.vocab = vocab; "
            "model.save_pretrained(folder))"
        )
    if "ages" in args.what and not model.config.has_time_tokens:
        raise ValueError(
            f"the model {args.model!r} has no time tokens, so it cannot predict ages: pass a "
            "temporal (stage 2) model, or --what embeddings"
        )
    return model


class _Source:
    """The input cells: their obs, and AnnData objects with tokens for any rows."""

    def __init__(self, path: str, kind: str, model, args: argparse.Namespace):
        from ._keys import made_with

        self.kind, self.path = kind, Path(path)
        vocab = model.vocab
        if kind == "store":
            from .pp import TokenStore

            self.store = TokenStore(path)
            mine = {"vocab_hash": self.store.vocab.hash,
                    "encoding_hash": self.store.vocab.encoding_hash}  # fmt: skip
            if not made_with(mine, vocab):
                raise ValueError(
                    f"the store {path!r} was tokenized with vocabulary {self.store.vocab.hash}, "
                    f"the model's is {vocab.hash}; tokenize with `--vocab {args.model}`"
                )
            if not self.store.complete:
                raise ValueError(
                    f"the store {path!r} is incomplete; finish `maxtoki tokenize` (run it again "
                    "with the same files and options) first"
                )
            obs = self.store.obs
            self.obs = obs.set_axis(obs["obs_name"].astype(str).to_numpy(), axis=0)
            self.tokens_key = "maxtoki_tokens"
            self.max_genes = args.max_genes or model.config.max_genes_per_cell
        else:
            self._adata, self.tokens_key = _read_h5ad(path, vocab, args)
            self.obs = self._adata.obs
        self.n_obs = len(self.obs)
        if self.n_obs == 0:
            raise ValueError(f"{path!r} holds no cells")

    def adata(self, rows: np.ndarray):
        """An AnnData of ``rows`` with tokens at ``obsm[self.tokens_key]``."""
        if self.kind == "h5ad":
            return self._adata[rows].copy()
        from ._cli_utils import store_adata

        return store_adata(self.store, rows, max_genes=self.max_genes, key_added="maxtoki")


def _read_h5ad(path: str, vocab, args: argparse.Namespace):
    import anndata as ad

    from . import logging as logg
    from ._settings import settings
    from .pp import tokenize

    adata = ad.read_h5ad(path)
    key = args.tokens_key
    if key in adata.obsm:
        return adata, key
    if key != "maxtoki_tokens":
        raise ValueError(f"{path!r} has no obsm[{key!r}]; pass --tokens-key of existing tokens")
    logg.info(f"tokenizing {adata.n_obs:,} cells of {path!r} with the model's vocabulary")
    with settings.override(verbosity=min(settings.verbosity, 1)):
        tokenize(adata, vocab=vocab, gene_id_key=args.gene_id_key, layer=args.layer)
    return adata, key


def _reference(source: _Source, args: argparse.Namespace):
    """The reference cells (known ages, ``--reference``) of the whole input, as an AnnData."""
    from . import logging as logg

    obs, key = source.obs, args.reference_key
    if args.time_key not in obs.columns:
        raise ValueError(
            f"{str(source.path)!r} has no obs column {args.time_key!r} (--time-key) with the "
            "reference cells' ages" + _store_hint(source)
        )
    if key is None or key not in obs.columns:
        if key is not None:
            logg.warning(f"obs has no {key!r} column; every cell with a known age is a reference")
        mask = np.ones(len(obs), dtype=bool)
    else:
        mask = obs[key].astype(str).isin(args.reference).to_numpy()
        if not mask.any():
            raise ValueError(
                f"no reference cells: obs[{key!r}] has no value in {args.reference}; pass "
                "--reference (the healthy group) or --reference-key none"
            )
    times = np.asarray(obs[args.time_key], dtype=np.float64)
    rows = np.flatnonzero(mask & np.isfinite(times))
    if len(rows) == 0:
        raise ValueError(f"no reference cell has a known obs[{args.time_key!r}]")
    ref = source.adata(rows)
    _mark_cells(ref, rows, args)
    return ref


def _store_hint(source: _Source) -> str:
    return " (tokenize with --obs-keys naming it)" if source.kind == "store" else ""


def _mark_cells(adata, rows: np.ndarray, args: argparse.Namespace) -> None:
    """Without donors, each cell its own "donor", so no query is its own context."""
    if args.donor_key is None or args.donor_key not in adata.obs.columns:
        adata.obs[_CELL_KEY] = rows.astype(str)


def _params(args: argparse.Namespace, kind: str, source: _Source, model) -> dict[str, Any]:
    """What the shards depend on: a rerun with other values is refused."""
    from ._cli_utils import json_safe

    path = Path(args.input).resolve()
    if kind == "store":
        m = source.store.manifest
        data_id = {"n_cells": source.n_obs, "vocab": m["vocab_hash"], "files": m["files"]}
    else:
        st = path.stat()
        data_id = {"n_cells": source.n_obs, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    weights = sorted(Path(args.model).glob("*.safetensors")) if Path(args.model).is_dir() else []
    config = json.dumps(json_safe(model.config.to_dict()), sort_keys=True, default=str)
    model_id = {
        "path": str(Path(args.model).resolve()) if weights else str(args.model),
        "config_sha256": hashlib.sha256(config.encode()).hexdigest()[:16],
        "vocab": model.vocab.hash,
        "weights": [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in weights],
    }
    keys = ["what", "shard_size", "obs_keys", "key_added", "max_genes", "tokens_key",
            "gene_id_key", "layer", "emb_layer", "emb_mode"]  # fmt: skip
    if "ages" in args.what:
        keys += ["reference_key", "reference", "time_key", "groupby", "donor_key", "n_contexts",
                 "n_context_cells", "aggregate", "random_state"]  # fmt: skip
    options = {k: getattr(args, k) for k in keys}
    options["what"] = sorted(set(args.what))
    return json_safe({"input": str(path), "kind": kind, "data": data_id, "model": model_id,
                      "options": options})  # fmt: skip


def _open_output(out: Path, params: dict[str, Any]) -> None:
    """Create the output folder and its manifest, or check that a rerun matches it."""
    from ._cli_utils import replace_atomically

    manifest = out / MANIFEST
    shards = out / "shards"
    written = shards.is_dir() and any(shards.glob("shard-*.h5ad"))
    if manifest.is_file() and written:  # else nothing to protect: start afresh
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{str(manifest)!r} is not valid JSON ({e}); use a new --out-dir"
            ) from None
        if old.get("format") != _FORMAT:
            raise ValueError(f"{str(manifest)!r} is not a maxtoki predict manifest")
        diff = _differences(old.get("params", {}), params)
        if diff:
            raise ValueError(
                f"{str(out)!r} holds predictions made with other inputs or options "
                f"({', '.join(diff)}); resume with the same command or use a new --out-dir"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".tmp-{MANIFEST}"
        tmp.write_text(json.dumps({"format": _FORMAT, "version": 1, "params": params}, indent=1))
        replace_atomically(tmp, manifest)
    shards.mkdir(exist_ok=True)
    for stale in shards.glob(".tmp-*"):  # left by a killed run
        stale.unlink()


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} → {b!r}")
    return out


def _shard_file(shards: Path, k: int) -> Path:
    return shards / f"shard-{k:05d}.h5ad"


def _compute(todo, bounds, shards: Path, source: _Source, ref, model, args) -> None:
    """Predict every shard in ``todo`` and write it (atomically) as soon as it is done."""
    from ._cli_utils import progress

    with progress(sum(bounds[k][1] - bounds[k][0] for k in todo), "predict", "cell") as bar:
        for k in todo:
            bar.update(_predict_shard(k, bounds[k], shards, source, ref, model, args))


def _check_obs_keys(source: _Source, args: argparse.Namespace) -> None:
    missing = [k for k in args.obs_keys if k not in source.obs.columns]
    if missing:
        raise ValueError(f"--obs-keys: the input has no obs column(s) {missing}")


def _predict_shard(k: int, bounds, shards: Path, source: _Source, ref, model, args) -> int:
    """Predict shard ``k`` (rows ``bounds``) and write its file atomically; its number of cells."""
    import os

    from anndata import AnnData

    from ._cli_utils import replace_atomically
    from ._settings import settings
    from .tl import embed, predict_time

    key = args.key_added
    emb_layer = int(args.emb_layer) if args.emb_layer.isdigit() else args.emb_layer
    columns = [f"{key}_age", f"{key}_timelapse", f"{key}_age_std"]
    common = {"model": model, "max_genes": args.max_genes, "batch_size": args.batch_size,
              "device": args.device, "tokens_key": source.tokens_key, "key_added": key}  # fmt: skip
    rows = np.arange(*bounds)
    shard = source.adata(rows)
    _mark_cells(shard, rows, args)
    # one shard at a time: the tools' own lines and bars would repeat for every shard
    quiet = {"verbosity": min(settings.verbosity, 1)}
    with settings.override(**quiet, **({"dtype": args.dtype} if args.dtype else {})):
        if "ages" in args.what:
            predict_time(
                shard, context=ref, reference_key=args.reference_key,
                reference=args.reference, time_key=args.time_key,
                groupby=args.groupby or None,
                donor_key=_CELL_KEY if _CELL_KEY in shard.obs else args.donor_key,
                n_contexts=args.n_contexts, n_context_cells=args.n_context_cells,
                aggregate=args.aggregate, random_state=args.random_state + k, **common,
            )  # fmt: skip
        if "embeddings" in args.what:
            embed(shard, emb_layer=emb_layer, emb_mode=args.emb_mode, **common)
    obs = shard.obs[[]].copy()
    if source.kind == "store":
        obs["source_file"] = shard.obs["source_file"].astype(str)
    for c in ([*columns] if "ages" in args.what else []) + list(args.obs_keys):
        obs[c] = shard.obs[c].to_numpy()
    result = AnnData(obs=obs)
    if "embeddings" in args.what:
        result.obsm[f"X_{key}"] = np.asarray(shard.obsm[f"X_{key}"])
    final = _shard_file(shards, k)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # two runs of one task: two names
    result.write_h5ad(tmp)
    replace_atomically(tmp, final)
    return len(rows)


def _compute_on_cluster(todo, bounds, shards: Path, args: argparse.Namespace) -> None:
    """One dask task per shard in ``todo``; a worker loads the model and input once."""
    from . import logging as logg
    from ._cli_utils import connect, progress
    from ._dask import map_shards

    options = {k: v for k, v in vars(args).items() if k != "func"}
    options["input"] = str(Path(args.input).resolve())  # the workers' working folder may differ
    if Path(args.model).exists():  # else a Hub repo id
        options["model"] = str(Path(args.model).resolve())
    client = connect(args.scheduler)
    with client:
        logg.info(f"    {len(todo)} shard(s) as tasks on the dask cluster {args.scheduler}")
        jobs = [(k, bounds[k]) for k in todo]
        with progress(sum(hi - lo for _, (lo, hi) in jobs), "predict", "cell") as bar:
            map_shards(client, _shard_task, jobs, on_done=lambda job, n: bar.update(n),
                       shared={"shards": str(shards.resolve()), "options": options},
                       name="maxtoki-predict")  # fmt: skip
    for stale in shards.glob(".tmp-*"):  # left by workers that died mid-write
        stale.unlink(missing_ok=True)


#: per worker process: the model, input and reference cells of the running job
_WORKER_STATE: dict[str, tuple] = {}
_WORKER_LOCK = threading.Lock()


def _shard_task(job, *, shards: str, options: dict[str, Any]) -> int:
    """A dask task: predict one shard (the model, input and reference loaded once per worker)."""
    from ._cli_utils import check_input

    args = argparse.Namespace(**options)
    key = json.dumps(options, sort_keys=True, default=str)
    with _WORKER_LOCK:
        if key not in _WORKER_STATE:
            _WORKER_STATE.clear()  # one job's model at a time
            model = _load_model(args)
            source = _Source(args.input, check_input(args.input), model, args)
            ref = _reference(source, args) if "ages" in args.what else None
            _WORKER_STATE[key] = (source, ref, model)
        source, ref, model = _WORKER_STATE[key]
    k, bounds = job
    return _predict_shard(k, bounds, Path(shards), source, ref, model, args)


def _combine(out: Path, n_shards: int, fmt: str) -> Path:
    """All shards → ``OUT_DIR/predictions.<fmt>`` (written atomically)."""
    import anndata as ad
    import pandas as pd

    from ._cli_utils import replace_atomically

    parts = [ad.read_h5ad(_shard_file(out / "shards", k)) for k in range(n_shards)]
    result = ad.concat(parts, merge="same") if len(parts) > 1 else parts[0]
    final = out / f"predictions.{fmt}"
    tmp = out / f".tmp-{final.name}"
    if fmt == "h5ad":
        result.write_h5ad(tmp)
    else:
        df = result.obs.reset_index(names="obs_name")
        for name, emb in result.obsm.items():
            emb = np.asarray(emb)
            cols = pd.DataFrame(emb, columns=[f"{name}_{i}" for i in range(emb.shape[1])])
            df = pd.concat([df, cols], axis=1)
        df.to_parquet(tmp, index=False)
    replace_atomically(tmp, final)
    return final
