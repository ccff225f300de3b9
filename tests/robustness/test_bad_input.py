"""Bad input to every public function: a clear error that names the fix, and the input unchanged.

One table of cases (``CASES``), each a function, a readable id, a builder of the input object and
the call. An error case expects a :class:`ValueError` or :class:`TypeError` whose message names
the problem and hints at the fix (``match=`` on key words); every case checks with
:func:`slot_hash` that the input object is bit-for-bit unchanged afterwards (for a view: its
parent too). A few cases are inputs that must *work* (categorical and string obs columns, views,
backed AnnData, duplicated names where they are harmless, huge integer counts).
:func:`test_every_public_function_is_covered` fails when a public function of ``mt.pp``,
``mt.tl``, ``mt.get`` or ``mt.pl`` has no case, so new functions cannot slip through.

The fixtures are a small simulated atlas and untrained tiny models (validation does not need a
trained model), built once per session.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import maxtoki as mt

# --- hashing every slot ---------------------------------------------------------------------


def slot_hash(obj: Any) -> str:
    """SHA-256 over every slot of an AnnData or MuData (or of a file, DataFrame, array…).

    AnnData: ``X`` (sparse ``data``/``indices``/``indptr``, backed matrices read), ``layers``,
    ``obs``/``var`` (column names, dtypes, categories and codes, values, index), ``obsm``,
    ``varm``, ``obsp``, ``varp``, ``uns`` (recursively), ``obs_names``, ``var_names``, ``raw``
    and whether it is a view. MuData: its own slots and every modality.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _tag(h, *parts: Any) -> None:
    h.update(repr(parts).encode())


def _feed(h, x: Any) -> None:
    if isinstance(x, ad.AnnData):
        _tag(h, "AnnData", x.shape, x.is_view, x.isbacked)
        _feed(h, _matrix(x.X))
        for name in ("layers", "obsm", "varm", "obsp", "varp"):
            _tag(h, name)
            _feed(h, {k: _matrix(v) for k, v in getattr(x, name).items()})
        _feed(h, x.obs)
        _feed(h, x.var)
        _tag(h, "uns")
        _feed(h, x.uns)
        _feed(h, x.obs_names)
        _feed(h, x.var_names)
        _tag(h, "raw", x.raw is not None)
        if x.raw is not None:
            _feed(h, _matrix(x.raw.X))
            _feed(h, x.raw.var)
        return
    if type(x).__name__ == "MuData":
        _tag(h, "MuData", x.shape, sorted(x.mod))
        for k in sorted(x.mod):
            _feed(h, x.mod[k])
        for name in ("obsm", "varm", "obsp", "varp"):
            _tag(h, name)
            _feed(h, {k: _matrix(v) for k, v in getattr(x, name).items()})
        _feed(h, x.obs)
        _feed(h, x.var)
        _feed(h, x.uns)
        return
    if isinstance(x, pd.DataFrame):
        _tag(h, "DataFrame", list(map(str, x.columns)), x.shape)
        for c in x.columns:
            _feed(h, x[c])
        _feed(h, x.index)
        return
    if isinstance(x, (pd.Series, pd.Index)):
        _tag(h, type(x).__name__, str(x.dtype), x.name)
        if isinstance(x.dtype, pd.CategoricalDtype):
            _tag(h, list(x.cat.categories) if isinstance(x, pd.Series) else list(x.categories))
            _tag(h, x.cat.ordered if isinstance(x, pd.Series) else x.ordered)
            codes = x.cat.codes if isinstance(x, pd.Series) else x.codes
            _feed(h, np.asarray(codes))
        elif isinstance(x.dtype, np.dtype) and x.dtype != object:
            _feed(h, x.to_numpy())
        else:
            _tag(h, [repr(v) for v in x.tolist()])
        return
    if isinstance(x, Mapping):
        _tag(h, "Mapping", type(x).__name__, len(x))
        for k in sorted(x, key=str):
            _tag(h, str(k))
            _feed(h, x[k])
        return
    if sp.issparse(x):
        x = x.tocsr() if x.format not in ("csr", "csc") else x
        _tag(h, "sparse", x.format, x.shape, str(x.dtype))
        for part in (x.data, x.indices, x.indptr):
            _feed(h, part)
        return
    if isinstance(x, np.ndarray):
        _tag(h, "ndarray", x.dtype.str, x.shape)
        if x.dtype == object:
            _tag(h, [repr(v) for v in x.ravel().tolist()])
        else:
            h.update(np.ascontiguousarray(x).tobytes())
        return
    if isinstance(x, Path):
        _tag(h, "path", str(x), x.exists())
        if x.is_file():
            h.update(x.read_bytes())
        elif x.is_dir():
            for p in sorted(x.rglob("*")):
                _feed(h, p) if p.is_file() else _tag(h, str(p))
        return
    if isinstance(x, (list, tuple)):
        _tag(h, type(x).__name__, len(x))
        for v in x:
            _feed(h, v)
        return
    _tag(h, type(x).__name__, repr(x))


def _matrix(m: Any) -> Any:
    """An in-memory version of a (possibly backed or viewed) matrix."""
    if m is None or isinstance(m, (np.ndarray, pd.DataFrame)) or sp.issparse(m):
        return m
    if hasattr(m, "to_memory"):  # backed sparse
        return m.to_memory()
    if hasattr(m, "shape") and hasattr(m, "dtype"):  # h5py dataset
        return np.asarray(m[()])
    return m


# --- fixtures: a small atlas, vocabularies, untrained tiny models ------------------------------

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 256,
}
FAST = {"device": "cpu", "max_genes": 8}  # every model call: small prompts on the CPU


@functools.cache
def tmp_root() -> Path:
    path = Path(tempfile.mkdtemp(prefix="maxtoki-bad-input-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _tmp(name: str) -> Path:
    path = tmp_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def fx() -> SimpleNamespace:
    """Built once: the atlas raw and tokenized, vocabularies, models and every tool's output."""
    from maxtoki.train import build_model

    old = mt.settings.verbosity
    mt.settings.verbosity = 0
    try:
        raw = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=12, n_genes=200, seed=0)
        medians = mt.pp.gene_medians(raw)
        vocab = mt.pp.GeneVocab.from_genes(medians)
        genes_only = mt.pp.GeneVocab.from_genes(medians, time_range=None)  # another model size
        foreign = mt.pp.GeneVocab.from_genes({f"ENSMUSG{i:011d}": 1.0 for i in range(5)})
        tok = raw.copy()
        mt.pp.tokenize(tok, vocab=vocab)
        tok_genes_only = raw.copy()
        mt.pp.tokenize(tok_genes_only, vocab=genes_only)
        # the same genes with other medians: another model's rank value encoding
        other_medians = mt.pp.GeneVocab.from_genes({g: 2 * m for g, m in medians.items()})
        tok_other = raw.copy()
        mt.pp.tokenize(tok_other, vocab=other_medians)
        model = build_model("tiny", vocab=vocab, overrides=TINY)
        model_genes_only = build_model("tiny", vocab=genes_only, overrides=TINY)
        done = tok.copy()
        mt.tl.predict_time(done, model=model, vocab=vocab, n_contexts=1, **FAST)
        mt.tl.age_acceleration(done, n_boot=20)
        mt.tl.attention(done, model, vocab=vocab, n_cells=20, **FAST)
        mt.tl.perturb(done, model, vocab=vocab, genes=[done.var_names[0]], n_cells=10, **FAST)
        mt.tl.evaluate(done, model=model, vocab=vocab, n_cells=10, n_contexts=1, **FAST)
        generated = mt.tl.generate(tok, model=model, vocab=vocab, n_cells=8, **FAST)
        prompts = mt.pp.trajectories(tok, n_prompts=6)
        path = _tmp("files") / "atlas.h5ad"
        raw.write_h5ad(path)
        tok_path = _tmp("files") / "tokenized.h5ad"
        done.write_h5ad(tok_path)
        store = _tmp("files") / "store"
        mt.pp.tokenize_corpus([path], store, vocab=vocab)
    finally:
        mt.settings.verbosity = old
    history = pd.DataFrame(
        {"kind": ["train"] * 4 + ["eval"], "step": [1, 2, 3, 4, 4], "loss": [4.0, 3, 2, 1, 1.5]}
    )
    return SimpleNamespace(**locals())


# fresh inputs (every case gets its own object)
def raw() -> ad.AnnData:
    return fx().raw.copy()


def tok() -> ad.AnnData:
    return fx().tok.copy()


def done() -> ad.AnnData:
    return fx().done.copy()


def generated() -> ad.AnnData:
    return fx().generated.copy()


def V():
    return fx().vocab


def M():
    return fx().model


@dataclass
class Guarded:
    """An input whose ``parent`` (e.g. the AnnData a view was taken from) must stay unchanged."""

    obj: Any
    parent: Any


def view_of(adata: ad.AnnData, genes: bool = False) -> Guarded:
    """A view of every other cell (all groups still present), or of every other gene."""
    return Guarded(adata[:, ::2] if genes else adata[::2], adata)


def backed(kind: str = "raw") -> ad.AnnData:
    path = fx().path if kind == "raw" else fx().tok_path
    return ad.read_h5ad(path, backed="r")


def mudata_without_rna(adata: ad.AnnData):
    import mudata

    with mudata.set_options(pull_on_update=False):
        return mudata.MuData({"prot": adata})


def mudata_of(adata: ad.AnnData):
    import mudata

    with mudata.set_options(pull_on_update=False):
        return mudata.MuData({"rna": adata})


def no_cells(adata: ad.AnnData) -> ad.AnnData:
    return adata[:0].copy()


def no_genes(adata: ad.AnnData) -> ad.AnnData:
    return adata[:, :0].copy()


def with_X(adata: ad.AnnData, change: Callable[[np.ndarray], np.ndarray]) -> ad.AnnData:
    """``adata`` with ``X`` replaced by ``change(dense float64 X)`` (CSR)."""
    X = np.asarray(adata.X.todense(), dtype=np.float64)
    adata.X = sp.csr_matrix(change(X))
    return adata


def set_X(X: np.ndarray, value: float, where=(0, slice(0, 3))) -> np.ndarray:
    X[where] = value
    return X


def log_normalised(X: np.ndarray) -> np.ndarray:
    return np.log1p(X / X.sum(axis=1, keepdims=True) * 1e4)


def with_obs(adata: ad.AnnData, **columns: Any) -> ad.AnnData:
    for k, v in columns.items():
        adata.obs[k] = v(adata.obs) if callable(v) else v
    return adata


def as_strings(adata: ad.AnnData, *columns: str) -> ad.AnnData:
    """Categorical obs columns turned into plain strings (object dtype)."""
    for c in columns:
        adata.obs[c] = adata.obs[c].astype(str).astype(object)
    return adata


def as_categories(adata: ad.AnnData, *columns: str) -> ad.AnnData:
    for c in columns:
        adata.obs[c] = pd.Categorical(adata.obs[c])
    return adata


def dup_obs_names(adata: ad.AnnData) -> ad.AnnData:
    names = adata.obs_names.to_numpy().copy()
    names[1] = names[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.obs_names = names
    return adata


def dup_var_names(adata: ad.AnnData, j: int = 1) -> ad.AnnData:
    names = adata.var_names.to_numpy().copy()
    names[j] = names[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.var_names = names
    return adata


def without_uns(adata: ad.AnnData, key: str) -> ad.AnnData:
    del adata.uns[key]
    return adata


def with_uns(adata: ad.AnnData, key: str, value: Any) -> ad.AnnData:
    adata.uns[key] = value
    return adata


def drop_var(adata: ad.AnnData, column: str) -> ad.AnnData:
    del adata.var[column]
    return adata


def symbols_only(adata: ad.AnnData) -> ad.AnnData:
    del adata.var["ensembl_id"]
    return adata


# --- the case table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    fn: str  # "pp.tokenize": the public function (or class) exercised
    name: str
    data: Callable[[], Any]  # builds the input (a fresh object, or a Guarded view)
    call: Callable[[Any], Any]
    exc: type | tuple[type, ...] | None  # None: the call must work
    match: str | None = None
    warns: str | None = None  # a UserWarning message the call must give (working cases)
    check: Callable[[Any, Any], None] | None = None  # (input, result) of a working case
    unchanged: bool = False  # a working case that must not change its input either

    @property
    def id(self) -> str:
        return f"{self.fn}:{self.name}"


CASES: list[Case] = []


def case(fn, name, data, call, exc=ValueError, match=None, **kw) -> None:
    CASES.append(Case(fn, name, data, call, exc, match, **kw))


def works(fn, name, data, call, **kw) -> None:
    CASES.append(Case(fn, name, data, call, None, None, **kw))


WRONG_TYPES = {
    "list": lambda: [[1, 2], [3, 4]],
    "ndarray": lambda: np.ones((3, 4)),
    "DataFrame": lambda: pd.DataFrame({"a": [1, 2]}),
    "None": lambda: None,
    "str": lambda: "atlas.h5ad",
}
TYPE_MSG = r"expected an AnnData or MuData, got \w+.*anndata\.AnnData"
MOD_MSG = r"MuData has no modality 'rna' \(it has \['prot'\]\); pass `mod=`"
TOKENIZE_FIRST = r"run `mt\.pp\.tokenize"
NO_CELLS = r"(has )?no cells.*"


# Every function that takes an AnnData: (input with everything it needs, the call). The generic
# cases below (wrong types, MuData without the modality, no cells, views) run against each.
ADATA_FUNCS: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
    "pp.tokenize": (raw, lambda d, **k: mt.pp.tokenize(d, vocab=V(), **k)),
    "pp.gene_medians": (raw, lambda d, **k: mt.pp.gene_medians(d, **k)),
    "pp.map_gene_ids": (
        lambda: symbols_only(raw()),
        lambda d, **k: mt.pp.map_gene_ids(
            d, dict(zip(fx().raw.var_names, fx().raw.var["ensembl_id"], strict=True)), **k
        ),
    ),
    "pp.trajectories": (raw, lambda d, **k: mt.pp.trajectories(d, **{"n_prompts": 6, **k})),
    "tl.embed": (tok, lambda d, **k: mt.tl.embed(d, M(), vocab=V(), **{**FAST, **k})),
    "tl.predict_time": (
        tok,
        lambda d, **k: mt.tl.predict_time(
            d, model=M(), vocab=V(), **{"n_contexts": 1, **FAST, **k}
        ),
    ),
    "tl.age_acceleration": (done, lambda d, **k: mt.tl.age_acceleration(d, **{"n_boot": 10, **k})),
    "tl.attention": (
        tok,
        lambda d, **k: mt.tl.attention(d, M(), vocab=V(), **{"n_cells": 10, **FAST, **k}),
    ),
    "tl.generate": (
        tok,
        lambda d, **k: mt.tl.generate(d, model=M(), vocab=V(), **{"n_cells": 4, **FAST, **k}),
    ),
    "tl.perturb": (
        tok,
        lambda d, **k: mt.tl.perturb(
            d,
            M(),
            vocab=V(),
            **{"genes": [fx().raw.var_names[0]], "n_cells": 4, "n_contexts": 1, **FAST, **k},
        ),
    ),
    "tl.evaluate": (
        tok,
        lambda d, **k: mt.tl.evaluate(
            d, model=M(), vocab=V(), **{"n_cells": 4, "n_contexts": 1, **FAST, **k}
        ),
    ),
    "tl.train": (
        tok,
        lambda d, **k: mt.tl.train(
            d,
            **{
                "vocab": V(),
                "steps": 1,
                "model_overrides": TINY,
                "quiet": True,
                "device": "cpu",
                "max_genes_per_cell": 8,
                "n_prompts": 16,
                **k,
            },
        ),
    ),
    "get.tokens": (tok, lambda d, **k: mt.get.tokens(d, **k)),
    "get.age_acceleration": (done, lambda d, **k: mt.get.age_acceleration(d, **k)),
    "get.attention_heads": (done, lambda d, **k: mt.get.attention_heads(d, **k)),
    "get.evaluate": (done, lambda d, **k: mt.get.evaluate(d, **k)),
    "get.perturb": (done, lambda d, **k: mt.get.perturb(d, **k)),
    "pl.predicted_age": (done, lambda d, **k: mt.pl.predicted_age(d, **{"show": False, **k})),
    "pl.age_acceleration": (done, lambda d, **k: mt.pl.age_acceleration(d, **{"show": False, **k})),
    "pl.attention_heads": (done, lambda d, **k: mt.pl.attention_heads(d, **{"show": False, **k})),
    "pl.attention_genes": (done, lambda d, **k: mt.pl.attention_genes(d, **{"show": False, **k})),
    "pl.evaluation": (done, lambda d, **k: mt.pl.evaluation(d, **{"show": False, **k})),
    "pl.explore": (tok, lambda d, **k: mt.pl.explore(d, model=M(), vocab=V(), **{**FAST, **k})),
    "pl.generated_vs_real": (
        tok,
        lambda d, **k: mt.pl.generated_vs_real(d, fx().generated, **{"show": False, **k}),
    ),
    "pl.trajectory": (
        tok,
        lambda d, **k: mt.pl.trajectory(d, fx().prompts, **{"show": False, **k}),
    ),
}

# how each function reports an AnnData without cells (None: it must work on one)
NO_CELLS_MSG: dict[str, str | None] = {name: NO_CELLS for name in ADATA_FUNCS}
NO_CELLS_MSG.update(
    {
        "pp.map_gene_ids": None,  # maps var: needs no cells
        "pp.trajectories": r"no cells with a time value",
        "pp.gene_medians": r"have 0 cells .*check the subset",
        **{
            f"get.{n}": None
            for n in ("tokens", "age_acceleration", "attention_heads", "evaluate", "perturb")
        },  # accessors of stored results
        "pl.attention_heads": None,
        "pl.attention_genes": None,
        "pl.evaluation": None,
        "pl.predicted_age": r"no cell has both a finite .* run `mt\.tl\.predict_time`",
        "pl.age_acceleration": r"no cell of the groups .* run `mt\.tl\.predict_time`",
        "pl.explore": r"no group .* has cells at two or more ages.* pass another `group_by`",
        "pl.generated_vs_real": r"both `real` and `generated` need cells",
        "pl.trajectory": r"not in adata\.obs_names; pass the AnnData the prompts were built from",
    }
)

# inputs some functions read differently: a path, or the table itself
TYPE_OVERRIDES = {
    ("pp.gene_medians", "str"): (ValueError, r"file 'atlas\.h5ad' does not exist; pass an AnnData"),
    ("pl.evaluation", "DataFrame"): (
        ValueError,
        r"has no \['split', 'method'\]; pass the DataFrame",
    ),
}

for _fn, (_good, _call) in ADATA_FUNCS.items():
    for _t, _make in WRONG_TYPES.items():
        _exc, _msg = TYPE_OVERRIDES.get((_fn, _t), (TypeError, TYPE_MSG))
        case(_fn, f"{_t}-instead-of-AnnData", _make, _call, _exc, _msg)
    case(
        _fn,
        "MuData-without-rna",
        lambda g=_good: mudata_without_rna(g()),
        _call,
        ValueError,
        MOD_MSG,
    )
    if NO_CELLS_MSG[_fn] is None:
        works(_fn, "0-cells", lambda g=_good: no_cells(g()), _call)
    else:
        case(_fn, "0-cells", lambda g=_good: no_cells(g()), _call, ValueError, NO_CELLS_MSG[_fn])


def _unchanged_view(fn: str, call: Callable) -> Callable:
    """Run ``call`` on a view: it may fail with a clear error, never write into the parent."""

    def run(d):
        try:
            return call(d)
        except (ValueError, TypeError) as err:
            raise AssertionError(f"{fn} refused a view: {err}") from err

    return run


for _fn, (_good, _call) in ADATA_FUNCS.items():
    # pl.trajectory draws the cells its prompts name: keep them all
    _genes = _fn == "pl.trajectory"
    works(_fn, "view", lambda g=_good, k=_genes: view_of(g(), k), _unchanged_view(_fn, _call))


# --- function-specific cases ------------------------------------------------------------------


def call(fn: str, **kw: Any) -> Callable[[Any], Any]:
    """The call of ``ADATA_FUNCS[fn]`` with extra keywords."""
    f = ADATA_FUNCS[fn][1]
    return lambda d: f(d, **kw)


def call_with(fn: str, **kw: Any) -> Callable[[Any], Any]:
    """Like :func:`call`, with callable keyword values built at call time (fixtures)."""
    f = ADATA_FUNCS[fn][1]
    return lambda d: f(d, **{k: v() if callable(v) else v for k, v in kw.items()})


def unchanged_copy(fn: str) -> None:
    """``copy=True`` returns a new object and leaves the input unchanged."""
    good, f = ADATA_FUNCS[fn]
    works(
        fn,
        "copy=True",
        good,
        lambda d: f(d, copy=True),
        unchanged=True,
        check=lambda d, out: (out is not None and out is not d) or pytest.fail("no copy"),
    )


def tokenized_with(change: Callable[[ad.AnnData], ad.AnnData], vocab=None) -> ad.AnnData:
    """The raw atlas changed by ``change``, then tokenized (with ``vocab``, default the model's)."""
    adata = change(raw())
    mt.pp.tokenize(adata, vocab=vocab or V(), min_overlap=0.0)
    return adata


def same_tokens(d: ad.AnnData, _: Any) -> None:
    np.testing.assert_array_equal(d.obsm["maxtoki_tokens"], fx().tok.obsm["maxtoki_tokens"])


def zero_first_cell(adata: ad.AnnData) -> ad.AnnData:
    return with_X(adata, lambda X: set_X(X, 0.0, (0, slice(None))))


def foreign_first_gene(adata: ad.AnnData) -> ad.AnnData:
    adata.var["ensembl_id"] = adata.var["ensembl_id"].astype(str)
    adata.var.iloc[0, adata.var.columns.get_loc("ensembl_id")] = "ENSMUSG00000000001"
    return adata


def one_type(adata: ad.AnnData) -> ad.AnnData:
    return adata[adata.obs["cell_type"] == adata.obs["cell_type"].iloc[0]].copy()


GENE0 = "MGM3"  # var_names[0] of the atlas
NOT_INT = r"must be a positive integer"


# errors on views: the view and its parent both stay unchanged
def nan_view() -> Guarded:
    parent = with_X(raw(), lambda X: set_X(X, np.nan, (1, slice(0, 3))))
    return Guarded(parent[1::2], parent)


case(
    "pp.tokenize",
    "view-with-NaN",
    nan_view,
    call("pp.tokenize"),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    "tl.predict_time",
    "view-reference-not-present",
    lambda: view_of(tok()),
    call("tl.predict_time", reference="healthy"),
    match=r"no reference cells",
)
case(
    "tl.age_acceleration",
    "view-before-predict_time",
    lambda: view_of(tok()),
    call("tl.age_acceleration"),
    match=r"run `mt\.tl\.predict_time` first",
)
case(
    "get.tokens",
    "view-before-tokenize",
    lambda: view_of(raw()),
    call("get.tokens"),
    match=TOKENIZE_FIRST,
)


# pp.tokenize --------------------------------------------------------------------------------
T = "pp.tokenize"
case(
    T,
    "NaN-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.nan)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "inf-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.inf)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "negative-X",
    lambda: with_X(raw(), lambda X: set_X(X, -1.0)),
    call(T),
    match=r"negative values; .*pass layer=",
)
case(
    T,
    "log-normalised-X",
    lambda: with_X(raw(), log_normalised),
    call(T),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "float-overflow-counts",
    lambda: with_X(raw(), lambda X: (X > 0) * 1e307),  # finite, but cells sum to infinity
    call(T),
    match=r"the counts of cell 0 sum to infinity .* pass layer= naming the raw counts",
)
works(
    T,
    "int64-counts-near-overflow",
    lambda: with_X(raw(), lambda X: X.astype(np.int64) << 40),
    call(T),
    check=same_tokens,
)
works(T, "duplicated-obs-names", lambda: dup_obs_names(raw()), call(T))
works(T, "duplicated-var-names", lambda: dup_var_names(raw()), call(T), check=same_tokens)
works(
    T, "n_counts-categorical", lambda: as_categories(raw(), "n_counts"), call(T), check=same_tokens
)
works(T, "backed", lambda: backed("raw"), call(T), check=same_tokens)
works(T, "MuData", lambda: mudata_of(raw()), call(T))
unchanged_copy(T)
case(
    T,
    "no-gene-in-vocab",
    raw,
    lambda d: mt.pp.tokenize(d, vocab=fx().foreign),
    match=r"none of the 200 gene IDs .* check the species and ID type",
)
case(
    T,
    "gene-symbols-no-ids",
    lambda: symbols_only(raw()),
    call(T),
    match=r"var_names look like gene symbols .* run mt\.pp\.map_gene_ids first",
)
case(T, "0-genes", lambda: no_genes(raw()), call(T), match=r"no genes.*")
case(
    T,
    "vocab-dict",
    raw,
    lambda d: mt.pp.tokenize(d, vocab={"<pad>": 0}),
    TypeError,
    r"vocab must be a maxtoki\.pp\.GeneVocab.*GeneVocab\.from_files",
)
case(T, "max_len-str", raw, call(T, max_len="4096"), match=r"max_len must be an integer ≥ 3")
case(T, "max_len-negative", raw, call(T, max_len=-5), match=r"max_len must be an integer ≥ 3")
case(
    T,
    "layer-missing",
    raw,
    call(T, layer="counts"),
    match=r"layer 'counts' not found; available layers: \[\] \(layer=None uses X\)",
)
case(
    T,
    "gene_id_key-missing",
    raw,
    call(T, gene_id_key="gene_id"),
    match=r"var has no column 'gene_id' .* pass gene_id_key=",
)
case(T, "min_overlap-above-1", raw, call(T, min_overlap=2), match=r"min_overlap must be a fraction")
case(T, "chunk_size-0", raw, call(T, chunk_size=0), match=r"chunk_size must be a positive integer")
case(T, "chunk_size-str", raw, call(T, chunk_size="100"), match=r"chunk_size must be a positive")
case(T, "key_added-empty", raw, call(T, key_added=""), match=r"key_added must be a non-empty")

# pp.gene_medians ----------------------------------------------------------------------------
T = "pp.gene_medians"
case(
    T,
    "NaN-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.nan)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "negative-X",
    lambda: with_X(raw(), lambda X: set_X(X, -1.0)),
    call(T),
    match=r"negative values; .*pass layer=",
)
case(
    T,
    "log-normalised-X",
    lambda: with_X(raw(), log_normalised),
    call(T),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "all-zero-counts",
    lambda: with_X(raw(), lambda X: X * 0),
    call(T),
    match=r"no gene has a non-zero count.*check `layer=`",
)
case(T, "0-genes", lambda: no_genes(raw()), call(T), match=r"0 genes; gene medians need")
case(T, "empty-list", lambda: [], call(T), match=r"no data given; pass an AnnData")
case(T, "list-with-a-non-AnnData", lambda: [raw(), 5], call(T), TypeError, TYPE_MSG)
case(
    T,
    "method-unknown",
    raw,
    call(T, method="median"),
    match=r"method must be 'exact' or 'histogram'",
)
case(T, "n_bins-1", raw, call(T, method="histogram", n_bins=1), match=r"n_bins must be an integer")
case(T, "chunk_size-str", raw, call(T, chunk_size="10"), match=r"chunk_size must be a positive")
case(T, "layer-missing", raw, call(T, layer="counts"), match=r"layer 'counts' not found")
works(T, "backed", lambda: backed("raw"), call(T), unchanged=True)
works(T, "h5ad-path", lambda: fx().path, call(T), unchanged=True)
works(T, "duplicated-obs-names", lambda: dup_obs_names(raw()), call(T), unchanged=True)

# pp.map_gene_ids ----------------------------------------------------------------------------
T = "pp.map_gene_ids"
SYM = lambda: symbols_only(raw())  # noqa: E731
case(
    T,
    "mapping-list",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, [("MGM3", "ENSG1")]),
    TypeError,
    r"mapping must be a dict, Series or two-column DataFrame",
)
case(
    T,
    "mapping-empty",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, {}),
    match=r"the mapping is empty.*; pass gene name → Ensembl ID pairs",
)
case(
    T,
    "mapping-3-columns",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, pd.DataFrame({"a": ["x"], "b": ["y"], "c": ["z"]})),
    match=r"needs exactly two columns \(names, Ensembl IDs\)",
)
case(
    T,
    "mapping-reversed",
    SYM,
    lambda d: mt.pp.map_gene_ids(
        d, dict(zip(fx().raw.var["ensembl_id"], fx().raw.var_names, strict=True))
    ),
    match=r"none of the 200 gene names .* check from_key= and the mapping's direction",
)
case(
    T,
    "from_key-missing",
    SYM,
    call(T, from_key="symbol"),
    match=r"var has no column 'symbol' .* pass from_key=None",
)
case(T, "key_added-None", SYM, call(T, key_added=None), match=r"key_added must be a non-empty")
works(T, "duplicated-var-names", lambda: dup_var_names(symbols_only(raw())), call(T))
works(T, "MuData", lambda: mudata_of(symbols_only(raw())), call(T))
unchanged_copy(T)

# pp.trajectories ----------------------------------------------------------------------------
T = "pp.trajectories"
case(
    T,
    "time_key-missing",
    raw,
    call(T, time_key="age"),
    match=r"obs has no time column 'age'; pass `time_key=`",
)
case(
    T,
    "time_key-not-numeric",
    raw,
    call(T, time_key="cell_type"),
    match=r"must hold numeric times in months.*pd\.to_numeric",
)
case(
    T,
    "infinite-ages",
    lambda: with_obs(raw(), age_months=np.inf),
    call(T),
    match=r"infinite values; times must be finite months",
)
case(
    T,
    "group_by-unknown",
    raw,
    call(T, group_by="tissue"),
    match=r"group_by columns \['tissue'\] are not in obs; pass existing obs columns",
)
case(T, "n_context-0", raw, call(T, n_context=0), match=r"n_context must satisfy 1 <= min <= max")
case(
    T,
    "n_context-str",
    raw,
    call(T, n_context="23"),
    TypeError,
    r"n_context must be an int or a \(min, max\) pair",
)
case(
    T,
    "n_prompts-negative",
    raw,
    call(T, n_prompts=-1),
    match=r"n_prompts must be a non-negative integer",
)
case(
    T,
    "n_prompts-str",
    raw,
    call(T, n_prompts="10"),
    TypeError,
    r"n_prompts must be a non-negative integer",
)
case(T, "task-unknown", raw, call(T, task="Both"), match=r"task must be one or both of")
case(T, "task_mix-above-1", raw, call(T, task_mix=1.5), match=r"task_mix is the fraction")
case(T, "task_mix-str", raw, call(T, task_mix="half"), match=r"task_mix is the fraction")
case(
    T,
    "holdout-unknown-column",
    raw,
    call(T, holdout={"tissue": "lung"}),
    match=r"holdout names obs column 'tissue', which does not exist; pass",
)
case(
    T,
    "holdout-mask-wrong-length",
    raw,
    call(T, holdout=np.ones(3, dtype=bool)),
    TypeError,
    r"boolean mask of length 144",
)
case(
    T,
    "time_range-reversed",
    raw,
    call(T, time_range=(10, 0)),
    match=r"time_range must be \(min, max\) months with max > min",
)
case(
    T,
    "single-time-point",
    lambda: with_obs(raw(), age_months=120),
    call(T),
    match=r"single time point.*Drop these groups, use a coarser `group_by`",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(raw()),
    call(T),
    match=r"obs_names are not unique.*obs_names_make_unique",
)
works(
    T,
    "string-group-columns",
    lambda: as_strings(raw(), "cell_type", "sex"),
    call(T),
    unchanged=True,
)
works(T, "categorical-ages", lambda: as_categories(raw(), "age_months"), call(T), unchanged=True)
works(
    T,
    "ages-beyond-time-tokens",
    lambda: with_obs(raw(), age_months=lambda o: o.age_months * 100),
    call(T),
    warns=r"outside the time-token range .* clipped",
    unchanged=True,
)
works(
    T,
    "some-ages-NaN",
    lambda: with_obs(raw(), age_months=lambda o: o.age_months.where(o.index != o.index[0])),
    call(T),
    warns=r"have no value in obs\['age_months'\]",
    unchanged=True,
)
works(T, "MuData", lambda: mudata_of(raw()), call(T), unchanged=True)


# pp.tokenize_corpus ---------------------------------------------------------------------------
def write_h5ad(change: Callable[[ad.AnnData], ad.AnnData], name: str) -> list[Path]:
    path = _tmp("corpus") / f"{name}.h5ad"
    if not path.exists():
        change(raw()).write_h5ad(path)
    return [path]


def corpus(out: str, **kw: Any) -> Callable[[Any], Any]:
    return lambda files: mt.pp.tokenize_corpus(
        files, tmp_root() / "stores" / out, **{"vocab": V(), **kw}
    )


T = "pp.tokenize_corpus"
case(T, "no-files", lambda: [], corpus("a"), match=r"no (input )?files")
case(
    T,
    "missing-file",
    lambda: [tmp_root() / "nope.h5ad"],
    corpus("b"),
    match=r"nope\.h5ad.* (does not exist|not found)",
)
case(
    T,
    "vocab-dict",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("c", vocab={}),
    TypeError,
    r"vocab must be a maxtoki\.pp\.GeneVocab",
)
case(
    T,
    "log-normalised-file",
    lambda: write_h5ad(lambda a: with_X(a, log_normalised), "log"),
    corpus("d"),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "obs_keys-missing",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("e", obs_keys=["tissue"]),
    match=r"tissue",
)
case(
    T,
    "no-gene-in-vocab",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("f", vocab=fx().foreign),
    match=r"none of the 200 gene IDs",
)
case(
    T,
    "max_len-0",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("g", max_len=0),
    match=r"max_len must be an integer ≥ 3",
)

# pp.GeneVocab -------------------------------------------------------------------------------
T = "pp.GeneVocab"
GV = mt.pp.GeneVocab
case(
    T,
    "no-special-tokens",
    lambda: ("a", "b"),
    lambda t: GV(t, {}),
    match=r"starts with \('<pad>', '<mask>', '<bos>', '<eos>'\)",
)
case(T, "no-genes", lambda: {}, lambda m: GV.from_genes(m), match=r"no genes?.*gene_medians")
case(
    T,
    "median-NaN",
    lambda: {"ENSG00000000001": np.nan},
    lambda m: GV.from_genes(m),
    match=r"gene medians must be finite and > 0.*mt\.pp\.gene_medians",
)
case(
    T,
    "median-negative",
    lambda: {"ENSG00000000001": -1.0},
    lambda m: GV.from_genes(m),
    match=r"gene medians must be finite and > 0",
)
case(
    T,
    "medians-not-a-mapping",
    lambda: [1.0, 2.0],
    lambda m: GV.from_genes(m),
    TypeError,
    r"gene_medians must be a mapping",
)
case(
    T,
    "time_range-reversed",
    lambda: {"ENSG00000000001": 1.0},
    lambda m: GV.from_genes(m, time_range=(5, 1)),
    match=r"time_range must be \(min, max\)",
)
case(
    T,
    "missing-files",
    lambda: tmp_root() / "nope",
    lambda p: GV.from_files(p / "tokens.json", p / "medians.json"),
    match=r"tokens\.json.* (does not exist|not found)",
)
case(
    T,
    "load-missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: GV.load(p),
    match=r"(does not exist|not found)",
)
case(
    T,
    "time-token-out-of-range",
    lambda: 5000,
    lambda m: V().time_token_id(m),
    match=r"months must lie in the time-token range \[-1500, 1499\]",
)

# pp.TokenStore ------------------------------------------------------------------------------
T = "pp.TokenStore"
case(
    T,
    "missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: mt.pp.TokenStore(p),
    match=r"is not a token store .* write one with mt\.pp\.tokenize_corpus",
)
case(T, "a-file", lambda: fx().path, lambda p: mt.pp.TokenStore(p), match=r"is not a token store")
case(
    T,
    "None",
    lambda: None,
    lambda p: mt.pp.TokenStore(p),
    TypeError,
    r"path must be the folder of a token store .* got NoneType; write one with mt\.pp",
)
works(T, "a-store", lambda: fx().store, lambda p: mt.pp.TokenStore(p), unchanged=True)

# tl: models and vocabularies ------------------------------------------------------------------
OTHER_SIZE = r"the model and `vocab` disagree \(vocab_size.*pass the vocabulary the model"
NO_TIME = r"has no time tokens, so .* pass a temporal \(stage 2\) model"
NOT_A_MODEL = r"model must be a maxtoki\.models\.MaxToki, got \w+; load one with"
OTHER_TOKENS = r"made with vocabulary \w+, this model's is \w+; re-run mt\.pp\.tokenize"
MODEL_TOOLS = {  # tool → how it passes (model, vocab)
    "tl.embed": lambda d, m, v: mt.tl.embed(d, m, vocab=v, **FAST),
    "tl.predict_time": lambda d, m, v: mt.tl.predict_time(
        d, model=m, vocab=v, n_contexts=1, **FAST
    ),
    "tl.attention": lambda d, m, v: mt.tl.attention(d, m, vocab=v, n_cells=5, **FAST),
    "tl.generate": lambda d, m, v: mt.tl.generate(d, model=m, vocab=v, n_cells=2, **FAST),
    "tl.perturb": lambda d, m, v: mt.tl.perturb(d, m, vocab=v, genes=GENE0, n_cells=2, **FAST),
    "tl.evaluate": lambda d, m, v: mt.tl.evaluate(d, model=m, vocab=v, n_cells=2, **FAST),
    "pl.explore": lambda d, m, v: mt.pl.explore(d, model=m, vocab=v, **FAST),
}
TEMPORAL = {"tl.predict_time", "tl.generate", "tl.perturb", "tl.evaluate", "pl.explore"}
for T, f in MODEL_TOOLS.items():
    case(T, "before-tokenize", raw, lambda d, f=f: f(d, M(), V()), match=TOKENIZE_FIRST)
    case(
        T,
        "tokens-of-another-vocab",
        lambda: fx().tok_other.copy(),
        lambda d, f=f: f(d, M(), V()),
        match=OTHER_TOKENS,
    )
    case(T, "model-None", tok, lambda d, f=f: f(d, None, V()), TypeError, NOT_A_MODEL)
    case(T, "model-a-preset-name", tok, lambda d, f=f: f(d, "tiny", V()), TypeError, NOT_A_MODEL)
    case(
        T,
        "vocab-dict",
        tok,
        lambda d, f=f: f(d, M(), {}),
        TypeError,
        r"vocab must be a maxtoki\.pp\.GeneVocab",
    )
    case(
        T,
        "model-of-another-size",
        tok,
        lambda d, f=f: f(d, fx().model_genes_only, V()),
        match=NO_TIME if T in TEMPORAL else OTHER_SIZE,
    )
    case(
        T,
        "vocab-of-another-size",
        tok,
        lambda d, f=f: f(d, M(), fx().genes_only),
        match=NO_TIME if T in TEMPORAL else OTHER_SIZE,
    )
    if T in TEMPORAL:
        case(
            T,
            "stage-1-model",
            lambda: fx().tok_genes_only.copy(),
            lambda d, f=f: f(d, fx().model_genes_only, fx().genes_only),
            match=NO_TIME,
        )

for T in (
    "tl.embed",
    "tl.predict_time",
    "tl.attention",
    "tl.generate",
    "tl.perturb",
    "tl.evaluate",
    "pl.explore",
):
    for bad in (0, -3, "8"):
        case(
            T,
            f"max_genes={bad!r}",
            tok,
            call(T, max_genes=bad),
            match=r"max_genes must be a "
            r"positive integer",
        )
for T in (
    "tl.embed",
    "tl.predict_time",
    "tl.attention",
    "tl.generate",
    "tl.perturb",
    "tl.evaluate",
):
    case(T, "batch_size-0", tok, call(T, batch_size=0), match=r"batch_size must be a positive")
    case(T, "batch_size-str", tok, call(T, batch_size="8"), match=r"batch_size must be a positive")

# tl.embed -----------------------------------------------------------------------------------
T = "tl.embed"
case(T, "emb_layer-out-of-range", tok, call(T, emb_layer=5), match=r"emb_layer must be an int in")
case(T, "emb_layer-str", tok, call(T, emb_layer="1"), match=r"emb_layer must be an int in")
case(T, "emb_mode-unknown", tok, call(T, emb_mode="max"), match=r"emb_mode must be 'cell' or 'eos'")
case(
    T,
    "cell-without-vocab-genes",
    lambda: tokenized_with(zero_first_cell),
    call(T),
    match=r"have no vocabulary gene .* remove them .* or use emb_mode='eos'",
)
works(T, "duplicated-obs-names", lambda: dup_obs_names(tok()), call(T))
works(T, "backed", lambda: backed("tok"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.predict_time ----------------------------------------------------------------------------
T = "tl.predict_time"
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no reference cells: obs\['condition'\] has no value in \['healthy'\]; pass `referen",
)
case(
    T,
    "group_by-unknown",
    tok,
    call(T, group_by="tissue"),
    match=r"group_by columns \['tissue'\] are not in the obs of the query; pass existing columns",
)
case(
    T,
    "time_key-missing",
    tok,
    call(T, time_key="age"),
    match=r"obs has no column 'age': pass `time_key=`",
)
case(
    T,
    "time_key-not-numeric",
    tok,
    call(T, time_key="cell_type"),
    match=r"obs\['cell_type'\] .* must be numeric months.* pass `time_key=`",
)
for bad in (0, -1, "5", 2.5):
    case(T, f"n_contexts={bad!r}", tok, call(T, n_contexts=bad), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(T, "aggregate-unknown", tok, call(T, aggregate="max"), match=r"aggregate must be 'median'")
case(T, "context-list", tok, call(T, context=[1, 2]), TypeError, TYPE_MSG)
case(T, "context-not-tokenized", tok, call_with(T, context=lambda: fx().raw), match=TOKENIZE_FIRST)
case(
    T,
    "context-lacks-groups",
    tok,
    call_with(T, context=lambda: one_type(fx().tok)),
    match=r"no reference cells for the group\(s\) .* pass a `context` with cells of these groups",
)
case(
    T,
    "context-without-ages",
    tok,
    call_with(T, context=lambda: with_obs(fx().tok.copy(), age_months=np.nan)),
    match=r"no reference cell has a known obs\['age_months'\]; pass a `context` with ages",
)
case(
    T,
    "one-donor-per-group",
    lambda: with_obs(tok(), donor="D0"),
    call(T),
    match=r"no reference cells outside donor 'D0'.* pass `donor_key=None`",
)
case(
    T,
    "ages-beyond-time-tokens",
    lambda: with_obs(tok(), age_months=lambda o: o.age_months * 100),
    call(T),
    match=r"outside the model's time tokens \[-1500, 1499\]; ages must be in months",
)
works(
    T,
    "string-obs-columns",
    lambda: as_strings(tok(), "condition", "cell_type", "sex", "donor"),
    call(T),
)
works(T, "categorical-ages", lambda: as_categories(tok(), "age_months"), call(T))
works(T, "duplicated-obs-names", lambda: dup_obs_names(tok()), call(T))
works(T, "backed", lambda: backed("tok"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.age_acceleration ------------------------------------------------------------------------
T = "tl.age_acceleration"
case(
    T,
    "before-predict_time",
    tok,
    call(T),
    match=r"obs has no column 'maxtoki_age': run `mt\.tl\.predict_time` first",
)
case(
    T,
    "groupby-unknown",
    done,
    call(T, groupby="disease"),
    match=r"obs has no column 'disease': pass `groupby=`",
)
case(
    T,
    "reference-not-present",
    done,
    call(T, reference="healthy"),
    match=r"reference 'healthy' is not a value of obs\['condition'\] .*; pass `reference=`",
)
case(
    T,
    "groups-not-present",
    done,
    call(T, groups=["flu"]),
    match=r"groups \['flu'\] are not values of obs\['condition'\]; pass `groups=`",
)
case(
    T,
    "only-the-reference",
    lambda: with_obs(done(), condition="control"),
    call(T),
    match=r"has no group besides the reference 'control'",
)
case(T, "adjust-unknown", done, call(T, adjust="quadratic"), match=r"adjust must be 'linear'")
for bad in (0, -5, "10"):
    case(T, f"n_boot={bad!r}", done, call(T, n_boot=bad), match=r"n_boot " + NOT_INT)
for bad in (1.5, 0, "0.9"):
    case(T, f"ci={bad!r}", done, call(T, ci=bad), match=r"ci must (be a number|lie) in \(0, 1\)")
for bad in (-1, "x", np.inf):
    case(
        T,
        f"age_match={bad!r}",
        done,
        call(T, age_match=bad),
        match=r"age_match must be a non-negative number of months or None",
    )
case(
    T,
    "stratify_by-unknown",
    done,
    call(T, stratify_by="tissue"),
    match=r"obs has no column 'tissue': pass an existing obs column as `stratify_by`",
)
case(
    T,
    "donor_key-unknown",
    done,
    call(T, donor_key="patient"),
    match=r"obs has no column 'patient': pass `donor_key=`",
)
case(
    T,
    "predictions-all-NaN",
    lambda: with_obs(done(), maxtoki_age=np.nan),
    call(T),
    match=r"no cell of the groups .* finite obs\['maxtoki_age'\]; run `mt\.tl\.predict_time`",
)
case(
    T,
    "predictions-not-numeric",
    done,
    call(T, predicted_key="cell_type"),
    match=r"obs\['cell_type'\] .* numeric",
)
works(T, "string-obs-columns", lambda: as_strings(done(), "condition", "donor"), call(T))
works(T, "stratified", done, call(T, stratify_by="cell_type"))
works(T, "duplicated-obs-names", lambda: dup_obs_names(done()), call(T))
works(T, "MuData", lambda: mudata_of(done()), call(T))
unchanged_copy(T)

# tl.attention -------------------------------------------------------------------------------
T = "tl.attention"
case(
    T,
    "gene_set-column-missing",
    tok,
    call(T, gene_set="tf"),
    match=r"var has no column 'tf'; pass a boolean var column as `gene_set`",
)
case(
    T,
    "gene_set-not-boolean",
    tok,
    call(T, gene_set="gene_kind"),
    match=r"var\['gene_kind'\] must be boolean to serve as `gene_set`",
)
case(
    T,
    "gene_set-unknown-names",
    tok,
    call(T, gene_set=["NOPE1"]),
    match=r"gene_set names \['NOPE1'\] are not in var_names",
)
case(
    T,
    "gene_set-all-genes",
    tok,
    call(T, gene_set=np.ones(200, dtype=bool)),
    match=r"gene_set must contain some genes but not all",
)
case(
    T,
    "gene_set-mask-wrong-length",
    tok,
    call(T, gene_set=np.ones(3, dtype=bool)),
    match=r"a boolean gene_set must have one entry per gene \(200\)",
)
case(
    T,
    "no-is_tf-column",
    lambda: drop_var(tok(), "is_tf"),
    call(T),
    match=r"var has no 'is_tf' column .* pass `gene_set=`",
)
case(
    T,
    "layers-out-of-range",
    tok,
    call(T, layers=[5]),
    match=r"layers \[5\] are out of range for a model with 1 layers",
)
case(T, "layers-str", tok, call(T, layers=["a"]), match=r"layers must be (layer )?indices")
for bad in (0, -1, "5"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
works(T, "duplicated-var-names", lambda: dup_var_names(tok()), call(T, gene_set=[GENE0]))
works(T, "gene_set-names", tok, call(T, gene_set=[GENE0, "XF2"]))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.generate --------------------------------------------------------------------------------
T = "tl.generate"
for bad in (5000, -2000, np.nan):
    case(
        T,
        f"timelapse={bad!r}",
        tok,
        call(T, timelapse=bad),
        match=r"timelapse must be finite months within the time tokens \[-1500, 1499\]",
    )
case(
    T,
    "timelapse-wrong-length",
    tok,
    call(T, timelapse=[12, 24]),
    match=r"timelapse must be one number or one per cell \(4\)",
)
for bad in (0, -1, "4"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(
    T,
    "groups-unknown",
    tok,
    call(T, groups=["neuron|female"]),
    match=r"no context cells with a known age for the group\(s\) \['neuron\|female'\]",
)
case(
    T,
    "group_by-unknown",
    tok,
    call(T, group_by="tissue"),
    match=r"group_by columns \['tissue'\] are not in the obs of the context",
)
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(
    T,
    "ages-all-NaN",
    lambda: with_obs(tok(), age_months=np.nan),
    call(T),
    match=r"no context cell has a known obs\['age_months'\]",
)
for name, bad in (("temperature", 0), ("temperature", -1.0), ("top_k", 0), ("top_p", 1.5)):
    case(T, f"{name}={bad!r}", tok, call(T, **{name: bad}), match=name)
case(
    T,
    "reference-not-tokenized",
    tok,
    call_with(T, reference=lambda: fx().raw),
    match=TOKENIZE_FIRST,
)
case(T, "reference-list", tok, call(T, reference=[1]), TypeError, TYPE_MSG)
works(
    T, "string-obs-columns", lambda: as_strings(tok(), "cell_type", "sex"), call(T), unchanged=True
)
works(T, "categorical-ages", lambda: as_categories(tok(), "age_months"), call(T), unchanged=True)
works(T, "MuData", lambda: mudata_of(tok()), call(T), unchanged=True)

# tl.perturb ---------------------------------------------------------------------------------
T = "tl.perturb"
case(
    T,
    "genes-not-in-var",
    tok,
    call(T, genes=["NOPE1"]),
    match=r"genes \['NOPE1'\] are not in var_names; pass",
)
case(T, "genes-empty", tok, call(T, genes=[]), match=r"pass at least one gene in `genes`")
case(T, "genes-int", tok, call(T, genes=5), TypeError, r"genes must be a gene name or a list")
case(
    T,
    "gene-outside-vocab",
    lambda: tokenized_with(foreign_first_gene),
    call(T, genes=[GENE0]),
    match=r"genes \['MGM3'\] are not in the model's vocabulary",
)
case(T, "kind-unknown", tok, call(T, kind="knockout"), match=r"kind must be 'delete' or 'overexp")
for bad in (0, -1, "5"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
case(T, "n_contexts-0", tok, call(T, n_contexts=0), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no reference cells: .* pass `reference=`",
)
case(
    T,
    "duplicated-var-name",
    lambda: dup_var_names(tok()),
    call(T, genes=[GENE0]),
    match=r"var_names are not unique.*var_names_make_unique",
)
works(T, "string-obs-columns", lambda: as_strings(tok(), "condition", "cell_type", "sex"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.evaluate --------------------------------------------------------------------------------
T = "tl.evaluate"
case(
    T,
    "heldout_cell_types-unknown",
    tok,
    call(T, heldout_cell_types=["neuron"]),
    match=r"heldout_cell_types \['neuron'\] are not values of obs\['cell_type'\]; pass",
)
case(
    T,
    "heldout_ages-reversed",
    tok,
    call(T, heldout_ages=(100, 10)),
    match=r"heldout_ages must be \(low, high\) months",
)
case(
    T,
    "nothing-held-out",
    tok,
    call(T, heldout_cell_types=[]),
    match=r"nothing to evaluate: pass `heldout_cell_types`",
)
case(
    T,
    "train_mask-wrong-length",
    tok,
    call(T, train_mask=np.ones(3, dtype=bool)),
    match=r"train_mask must be a boolean mask over the 144 cells",
)
case(
    T,
    "train_mask-column-missing",
    tok,
    call(T, train_mask="is_train"),
    match=r"obs has no column 'is_train': pass a boolean obs column",
)
case(
    T,
    "ablations-unknown",
    tok,
    call(T, ablations=["foo"]),
    match=r"unknown ablations \['foo'\]; choose from",
)
case(T, "n_contexts-0", tok, call(T, n_contexts=0), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(T, "n_cells-negative", tok, call(T, n_cells=-1), match=r"n_cells " + NOT_INT)
case(
    T,
    "doublet_pairs-unknown",
    tok,
    call(T, doublet_pairs="all"),
    match=r"doublet_pairs must be 'any' or 'same_type'",
)
case(T, "generated-list", tok, call(T, generated=[1]), TypeError, TYPE_MSG)
case(
    T,
    "cell_type_key-missing",
    tok,
    call(T, cell_type_key="type"),
    match=r"obs has no column 'type': pass `cell_type_key=`",
)
case(
    T,
    "sex_key-missing",
    tok,
    call(T, sex_key="gender"),
    match=r"obs has no column 'gender': pass `sex_key=`",
)
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no training cells: check .*`reference`",
)
case(
    T,
    "time_key-not-numeric",
    tok,
    call(T, time_key="cell_type"),
    match=r"must be numeric months.* pass `time_key=`",
)
works(
    T,
    "string-obs-columns",
    lambda: as_strings(tok(), "condition", "cell_type", "sex", "donor"),
    call(T),
)

# tl.train -----------------------------------------------------------------------------------
T = "tl.train"
case(T, "before-tokenize", raw, call(T), match=TOKENIZE_FIRST)
case(T, "vocab-dict", tok, call(T, vocab={}), TypeError, r"vocab must be a maxtoki\.pp\.GeneVocab")
case(T, "stage-3", tok, call(T, stage=3), match=r"stage must be one of \[1, 2\], got 3")
for bad in (0, -1, "5"):
    case(T, f"steps={bad!r}", tok, call(T, steps=bad), match=r"steps")
case(
    T,
    "model-int",
    tok,
    call(T, model=42),
    TypeError,
    r"model must be a preset name, a model folder or a MaxToki",
)
case(
    T,
    "model-unknown-preset",
    tok,
    call(T, model="huge"),
    match=r"unknown preset 'huge'; choose one of",
)
case(
    T,
    "model-of-another-vocab",
    tok,
    call_with(T, model=lambda: fx().model_genes_only),
    match=r"the model has 204 tokens but the vocabulary has 3206",
)
case(
    T, "config-unknown-field", tok, call(T, config={"learning_rate": 1e-3}), match=r"learning_rate"
)
case(T, "config-negative-lr", tok, call(T, config={"lr": -1.0}), match=r"lr")
case(T, "config-str", tok, call(T, config="fast"), TypeError, r"config must be a TrainConfig")
case(T, "prompts-list", tok, call(T, prompts=[1, 2]), TypeError, r"prompts must be")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(T, "group_by-unknown", tok, call(T, group_by="tissue"), match=r"group_by columns \['tissue'\]")
case(T, "max_genes_per_cell-0", tok, call(T, max_genes_per_cell=0), match=r"max_genes_per_cell")
case(
    T,
    "stage-2-without-time-tokens",
    lambda: fx().tok_genes_only.copy(),
    call_with(T, vocab=lambda: fx().genes_only),
    match=r"(no time tokens|temporal).*",
)
case(
    T,
    "model_overrides-unknown",
    tok,
    call(T, model_overrides={"width": 3}),
    TypeError,
    r"unknown MaxTokiConfig fields \['width'\]; valid fields",
)
case(
    T,
    "model_overrides-negative",
    tok,
    call(T, model_overrides={**TINY, "hidden_size": -2}),
    match=r"hidden_size must be >= 1",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T),
    match=r"obs_names are not unique.*run `adata\.obs_names_make_unique\(\)`",
)
works(
    T,
    "stage-1-without-time-tokens",
    lambda: fx().tok_genes_only.copy(),
    call_with(T, vocab=lambda: fx().genes_only, stage=1),
    unchanged=True,
)
works(
    T, "string-obs-columns", lambda: as_strings(tok(), "cell_type", "sex"), call(T), unchanged=True
)

# get ----------------------------------------------------------------------------------------
T = "get.tokens"
case(
    T,
    "before-tokenize",
    raw,
    call(T),
    match=r"obsm\['maxtoki_tokens'\] not found; run `mt\.pp\.tokenize` first",
)
case(T, "key-unknown", tok, call(T, key="tokens"), match=r"obsm\['tokens'\] not found; run")
case(T, "output-unknown", tok, call(T, output="dict"), match=r"output must be 'list', 'wide'")
for bad in (0, "3"):
    case(
        T, f"max_genes={bad!r}", tok, call(T, max_genes=bad), match=r"max_genes must be a positive"
    )
case(
    T,
    "vocab-of-another-model",
    tok,
    call(T, vocab=fx().other_medians),
    match=r"made with vocabulary \w+, this one is \w+; decode with the vocabulary",
)
case(T, "vocab-dict", tok, call(T, vocab={}), TypeError, r"vocab must be a maxtoki\.pp\.GeneVocab")
case(
    T,
    "gene_symbols-missing",
    tok,
    call(T, gene_symbols="symbol"),
    match=r"var has no column 'symbol' .*; pass",
)
case(
    T,
    "no-vocab-and-no-token-ids",
    lambda: drop_var(without_uns(tok(), "maxtoki_tokens"), "maxtoki_token_id"),
    call(T),
    match=r"var\['maxtoki_token_id'\] not found .* run `mt\.pp\.tokenize` first or pass vocab=",
)
works(
    T,
    "long-with-duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T, output="long"),
    unchanged=True,
)
works(T, "backed", lambda: backed("tok"), call(T, output="wide"), unchanged=True)
works(T, "MuData", lambda: mudata_of(tok()), call(T), unchanged=True)

for T, tool, key in (
    ("get.age_acceleration", "age_acceleration", "maxtoki_age_acceleration"),
    ("get.attention_heads", "attention", "maxtoki_attention"),
    ("get.evaluate", "evaluate", "maxtoki_evaluate"),
    ("get.perturb", "perturb", "maxtoki_perturb"),
):
    msg = rf"uns has no '{key}' table: run `mt\.tl\.{tool}` first \(or pass its `key_added`"
    case(T, f"before-tl.{tool}", tok, call(T), match=msg)
    case(T, "key-unknown", done, call(T, key="nope"), match=r"uns has no 'nope' table: run")
    case(T, "slot-overwritten", lambda k=key: with_uns(done(), k, "garbage"), call(T), match=msg)
    case(
        T,
        "table-damaged",
        lambda k=key: with_uns(done(), k, {"table": 5, "heads": 5}),
        call(T),
        match=rf"uns\['{key}'\]\['\w+'\] is damaged.* re-run `mt\.tl\.{tool}`",
    )
    works(T, "MuData", lambda: mudata_of(done()), call(T), unchanged=True)
    works(T, "backed", lambda: backed("tok"), call(T), unchanged=True)

# pl -----------------------------------------------------------------------------------------
UNIT = r"unit must be 'years' or 'months'"
T = "pl.predicted_age"
case(
    T,
    "before-predict_time",
    tok,
    call(T),
    match=r"adata\.obs has no \['maxtoki_age'\]; run `mt\.tl\.predict_time` first",
)
case(
    T,
    "color-unknown",
    done,
    call(T, color="tissue"),
    match=r"adata\.obs has no \['tissue'\]; pass an existing obs column as `color`",
)
case(T, "groupby-unknown", done, call(T, groupby="tissue"), match=r"as `groupby`")
case(
    T,
    "groupby-with-ax",
    done,
    lambda d: mt.pl.predicted_age(d, groupby="cell_type", ax=_axes(), show=False),
    match=r"do not pass `ax`",
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
case(T, "ncols-0", done, call(T, groupby="cell_type", ncols=0), match=r"ncols " + NOT_INT)
case(
    T,
    "predictions-all-NaN",
    lambda: with_obs(done(), maxtoki_age=np.nan),
    call(T),
    match=r"no cell has both a finite",
)
works(T, "categorical-color", done, call(T, color="cell_type"), unchanged=True)
works(
    T,
    "string-color",
    lambda: as_strings(done(), "cell_type"),
    call(T, color="cell_type"),
    unchanged=True,
)
works(T, "numeric-color", done, call(T, color="n_counts"), unchanged=True)
works(T, "backed", lambda: backed("tok"), call(T), unchanged=True)

T = "pl.age_acceleration"
case(T, "before-tl.age_acceleration", tok, call(T), match=r"run `mt\.tl\.age_acceleration` first")
case(T, "groupby-unknown", done, call(T, groupby="disease"), match=r"as `groupby`")
case(T, "kind-unknown", done, call(T, kind="bar"), match=r"kind must be 'violin' or 'box'")
case(
    T,
    "stratum-not-stratified",
    done,
    call(T, stratum="fibroblast"),
    match=r"is not stratified; pass `stratum=None`",
)
case(
    T,
    "order-unknown-group",
    done,
    call(T, order=["flu"]),
    match=r"order names groups \['flu'\] that are not in obs\['condition'\]; pass",
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
works(T, "string-groupby", lambda: as_strings(done(), "condition"), call(T), unchanged=True)

T = "pl.attention_heads"
case(T, "before-tl.attention", tok, call(T), match=r"run `mt\.tl\.attention` first")
case(
    T,
    "value-unknown",
    done,
    call(T, value="nope"),
    match=r"has no \['nope'\]; pass a column of `mt\.get\.attention_heads` as `value`",
)
case(
    T,
    "correction-unknown",
    done,
    call(T, correction="bonferroni"),
    match=r"correction must be 'bh' or 'none'",
)
for bad in (2, "0.05"):
    case(T, f"alpha={bad!r}", done, call(T, alpha=bad), match=r"alpha must (be a number|lie) in")

T = "pl.attention_genes"
case(T, "before-tl.attention", tok, call(T), match=r"run `mt\.tl\.attention` first")
case(T, "n_genes-0", done, call(T, n_genes=0), match=r"n_genes " + NOT_INT)
case(T, "heads-unknown", done, call(T, heads=["L9H9"]), match=r"heads \['L9H9'\] are not in")
case(T, "gene_set-unknown", done, call(T, gene_set="tf"), match=r"'tf'.*pass")
case(
    T,
    "gene_symbols-unknown",
    done,
    call(T, gene_symbols="symbol"),
    match=r"adata\.var has no \['symbol'\]; pass a var column of gene names",
)
case(
    T,
    "several-heads-with-ax",
    done,
    lambda d: mt.pl.attention_genes(d, heads=["L0H0", "L0H1"], ax=_axes(), show=False),
    match=r"pass one head to draw into `ax`",
)

T = "pl.evaluation"
case(T, "before-tl.evaluate", tok, call(T), match=r"run `mt\.tl\.evaluate` first")
case(
    T, "metric-unknown", done, call(T, metric="rmse"), match=r"pass one of its columns as `metric`"
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
case(
    T,
    "metric-without-values",
    lambda: mt.get.evaluate(fx().done).assign(pearson_r=np.nan),
    call(T, metric="pearson_r"),
    match=r"no row of the table has a value for 'pearson_r'; pass",
)
works(T, "the-table", lambda: mt.get.evaluate(fx().done), call(T), unchanged=True)

T = "pl.explore"
case(
    T,
    "group_by-unknown",
    tok,
    call(T, group_by="tissue"),
    match=r"pass existing obs columns as `group_by`",
)
for bad in (0, "20"):
    case(T, f"n_top_genes={bad!r}", tok, call(T, n_top_genes=bad), match=r"n_top_genes " + NOT_INT)
case(T, "gene_symbols-unknown", tok, call(T, gene_symbols="symbol"), match=r"var column of names")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(T, "temperature-str", tok, call(T, temperature="hot"), match=r"temperature")

T = "pl.generated_vs_real"
case(
    T,
    "generated-list",
    tok,
    lambda d: mt.pl.generated_vs_real(d, [1], show=False),
    TypeError,
    TYPE_MSG,
)
case(
    T,
    "generated-0-cells",
    tok,
    lambda d: mt.pl.generated_vs_real(d, no_cells(fx().generated), show=False),
    match=r"need cells",
)
case(T, "basis-unknown", tok, call(T, basis="tsne"), match=r"basis must be 'auto', 'umap' or 'pca'")
case(
    T,
    "representation-unknown",
    tok,
    call(T, representation="raw"),
    match=r"representation must be 'top_genes' or 'expression'",
)
case(T, "color-unknown", tok, call(T, color="tissue"), match=r"'tissue'.*pass")
for name, bad in (("n_real", 0), ("n_real", -1), ("n_comps", 0)):
    case(T, f"{name}={bad!r}", tok, call(T, **{name: bad}), match=rf"{name} " + NOT_INT)
works(
    T,
    "generated-any-AnnData",
    tok,
    lambda d: mt.pl.generated_vs_real(d, fx().raw[:20], show=False),
    unchanged=True,
)
works(
    T,
    "string-color",
    lambda: as_strings(tok(), "cell_type"),
    call(T, color="cell_type"),
    unchanged=True,
)

T = "pl.trajectory"
case(
    T,
    "prompts-list",
    tok,
    lambda d: mt.pl.trajectory(d, [1], show=False),
    TypeError,
    r"prompts must be the DataFrame of `mt\.pp\.trajectories`",
)
case(
    T,
    "prompts-missing-columns",
    tok,
    lambda d: mt.pl.trajectory(d, pd.DataFrame({"a": [1]}), show=False),
    match=r"prompts has no \['ctx0', 'query'\]; pass a table from `mt\.pp\.trajectories`",
)
case(T, "row-out-of-range", tok, call(T, row=99), match=r"row 99 is out of range for a table of 6")
case(
    T,
    "row-unknown-label",
    tok,
    call(T, row="nope"),
    match=r"row 'nope' is neither a position nor an index label",
)
case(T, "row-empty", tok, call(T, row=[]), match=r"`row` names no prompt")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(
    T,
    "generated-not-generated",
    tok,
    call(T, generated=fx().raw),
    match=r"pass the AnnData returned by `mt\.tl\.generate`",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T),
    match=r"obs_names are not unique.*obs_names_make_unique",
)
case(T, "unit-unknown", tok, call(T, unit="days"), match=UNIT)


def _axes():
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _figure():
    import matplotlib.pyplot as plt

    return plt.figure()


T = "pl.savefig"
for name, bad in (("list", lambda: [1]), ("None", lambda: None), ("str", lambda: "fig")):
    case(
        T,
        f"{name}-instead-of-figure",
        bad,
        lambda f: mt.pl.savefig(f, tmp_root() / "x.png"),
        TypeError,
        r"expected a matplotlib Figure or Axes",
    )
case(
    T,
    "name-None",
    _figure,
    lambda f: mt.pl.savefig(f, None),
    TypeError,
    r"name must be a file name or path",
)
case(
    T,
    "dpi-negative",
    _figure,
    lambda f: mt.pl.savefig(f, tmp_root() / "x.png", dpi=-1),
    match=r"dpi must be positive",
)
works(T, "axes", _axes, lambda a: mt.pl.savefig(a, tmp_root() / "figs" / "axes"))

T = "pl.training_curves"
HIST = lambda: fx().history.copy()  # noqa: E731
case(
    T,
    "history-list",
    lambda: [1],
    lambda h: mt.pl.training_curves(h, show=False),
    TypeError,
    r"history must be the DataFrame of `mt\.tl\.train` or a path",
)
case(
    T,
    "history-missing-file",
    lambda: tmp_root() / "nope" / "metrics.jsonl",
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"does not exist; pass a run's metrics\.jsonl",
)
case(
    T,
    "no-loss-columns",
    lambda: HIST().drop(columns="loss"),
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"has none of the loss columns",
)
case(
    T,
    "empty-history",
    lambda: HIST().iloc[:0],
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"(no rows|empty)",
)
case(
    T,
    "x-unknown",
    HIST,
    lambda h: mt.pl.training_curves(h, x="time", show=False),
    match=r"x must be 'step' or 'elapsed_s'",
)
for bad in (0, -1, "3"):
    case(
        T,
        f"smooth={bad!r}",
        HIST,
        lambda h, b=bad: mt.pl.training_curves(h, smooth=b, show=False),
        match=r"smooth must be a positive integer or None",
    )
case(
    T, "unit-unknown", HIST, lambda h: mt.pl.training_curves(h, unit="days", show=False), match=UNIT
)
case(
    T,
    "one-ax",
    HIST,
    lambda h: mt.pl.training_curves(h, ax=[_axes()], show=False),
    match=r"pass two Axes as `ax`",
)
works(T, "the-history", HIST, lambda h: mt.pl.training_curves(h, show=False), unchanged=True)

# datasets -----------------------------------------------------------------------------------
T = "datasets.aging_atlas"
for name, bad, msg in (
    ("n_donors", -1, r"`n_donors` must be at least 4"),
    ("n_donors", "40", r"`n_donors` must be an integer"),
    ("n_donors", 4.5, r"`n_donors` must be an integer"),
    ("n_cells_per_donor", 0, r"`n_cells_per_donor` must be at least 1"),
    ("n_genes", 10, r"`n_genes` must be at least 200"),
    ("n_cell_types", 0, r"`n_cell_types` must be at least 3"),
    ("n_heldout_cell_types", 6, r"`n_heldout_cell_types` must be at least 0 and at most"),
    ("disease_fraction", 2.0, r"`disease_fraction` must lie in \[0, 0\.5\)"),
    ("max_age_years", -1.0, r"`max_age_years` must lie in"),
    ("library_size", 0.0, r"`library_size` must lie in"),
    ("dropout", 1.5, r"`dropout` must lie in"),
    ("age_effect", np.nan, r"`age_effect` must be a finite number"),
    ("seed", "a", r"`seed` must be an integer"),
):
    case(
        T,
        f"{name}={bad!r}",
        lambda: None,
        lambda _, n=name, b=bad: mt.datasets.aging_atlas(**{n: b}),
        match=msg,
    )

# models and train -----------------------------------------------------------------------------
T = "models.MaxToki"
case(
    T,
    "from_pretrained-missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: mt.models.MaxToki.from_pretrained(p),
    FileNotFoundError,
    r"is not a folder; expected a model folder with config\.json",
)
case(
    T,
    "from_pretrained-a-file",
    lambda: fx().path,
    lambda p: mt.models.MaxToki.from_pretrained(p),
    FileNotFoundError,
    r"is not a folder; expected a model folder with config\.json",
)
case(
    T,
    "config-a-str",
    lambda: "tiny",
    lambda c: mt.models.MaxToki(c),
    TypeError,
    r"config must be a MaxTokiConfig",
)
case(
    T,
    "input-ids-outside-vocab",
    lambda: None,
    lambda _: M()(__import__("torch").tensor([[2, 99999, 3]])),
    match=r"outside|vocab",
)
case(
    T,
    "generate-temperature-negative",
    lambda: None,
    lambda _: M().generate(
        [__import__("torch").tensor([2, 5, 3])], max_new_tokens=2, temperature=-1.0
    ),
    match=r"temperature",
)
T = "models.MaxTokiConfig"
case(
    T,
    "preset-unknown",
    lambda: "huge",
    lambda n: mt.models.MaxTokiConfig.preset(n),
    match=r"unknown preset 'huge'; choose one of",
)
case(
    T,
    "hidden_size-negative",
    lambda: None,
    lambda _: mt.models.MaxTokiConfig.preset("tiny", hidden_size=-1),
    match=r"hidden_size must be >= 1",
)
case(
    T,
    "hidden_size-str",
    lambda: None,
    lambda _: mt.models.MaxTokiConfig.preset("tiny", hidden_size="64"),
    TypeError,
    r"hidden_size must be an int",
)
works(
    T,
    "from_dict-extra-HF-field",
    lambda: {"hidden_size": 64, "model_type": "llama"},
    lambda d: mt.models.MaxTokiConfig.from_dict(d),
    unchanged=True,
)  # HF configs carry more
T = "train.TrainConfig"
case(
    T,
    "unknown-field",
    lambda: {"learning_rate": 1.0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"learning_rate",
)
case(
    T, "lr-negative", lambda: {"lr": -1.0}, lambda d: mt.train.TrainConfig.from_dict(d), match=r"lr"
)
case(
    T,
    "micro_batch_size-0",
    lambda: {"micro_batch_size": 0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"micro_batch_size",
)
case(
    T,
    "steps-str",
    lambda: {"steps": "10"},
    lambda d: mt.train.TrainConfig.from_dict(d),
    (ValueError, TypeError),
    r"steps",
)
T = "train.build_model"
case(
    T,
    "model-int",
    lambda: 42,
    lambda m: mt.train.build_model(m),
    TypeError,
    r"model must be a preset name, a model folder or a MaxToki",
)
case(
    T,
    "model-of-another-vocab",
    lambda: None,
    lambda _: mt.train.build_model(fx().model_genes_only, vocab=V()),
    match=r"the model has 204 tokens but the vocabulary has 3206",
)
T = "train.read_prompts"
case(
    T,
    "missing-file",
    lambda: tmp_root() / "nope.csv",
    lambda p: mt.train.read_prompts(p),
    FileNotFoundError,
    r"nope\.csv.* not found; write one with `mt\.pp\.trajectories",
)


# --- the tests --------------------------------------------------------------------------------


def _resolve(built: Any) -> tuple[Any, list[Any]]:
    """The object to pass and the objects that must stay unchanged."""
    if isinstance(built, Guarded):
        return built.obj, [built.obj, built.parent]
    return built, [built]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case):
    import matplotlib.pyplot as plt

    fx()
    obj, guarded = _resolve(c.data())
    before = [slot_hash(g) for g in guarded]
    try:
        if c.exc is None:
            if c.warns:
                with pytest.warns(UserWarning, match=c.warns):
                    result = c.call(obj)
            else:
                result = c.call(obj)
            if c.check is not None:
                c.check(obj, result)
            if not c.unchanged:  # a writer may change its input, never the parent of a view
                guarded, before = guarded[1:], before[1:]
        else:
            with pytest.raises(c.exc, match=c.match) as info:
                c.call(obj)
            # never a KeyError, IndexError, AttributeError or a library's internal error
            assert isinstance(info.value, (ValueError, TypeError, FileNotFoundError))
    finally:
        plt.close("all")
    after = [slot_hash(g) for g in guarded]
    assert after == before, "the input object was modified"


PUBLIC = sorted(
    {f"{m}.{n}" for m in ("pp", "tl", "get", "pl", "datasets") for n in getattr(mt, m).__all__}
)


def test_every_public_function_is_covered():
    """Every public function of pp/tl/get/pl (and the datasets) has at least one error case."""
    covered = {c.fn for c in CASES if c.exc is not None}
    missing = [name for name in PUBLIC if name not in covered]
    assert not missing, f"public functions without a bad-input case in CASES: {missing}"
    takes_adata = [
        name
        for name in PUBLIC
        if name.split(".")[0] in ("pp", "tl", "get", "pl")
        and name
        not in (
            "pp.GeneVocab",
            "pp.TokenStore",
            "pp.tokenize_corpus",
            "pl.savefig",
            "pl.training_curves",
        )
    ]
    assert sorted(ADATA_FUNCS) == sorted(takes_adata), "add the new function to ADATA_FUNCS"
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"


def _mutations() -> dict[str, Callable[[ad.AnnData], None]]:
    def x_value(a):
        a.X.data[0] += 1

    def x_indices(a):
        a.X.indices[[0, 1]] = a.X.indices[[1, 0]]

    def obs_dtype(a):
        a.obs["age_months"] = a.obs["age_months"].astype(np.int64)

    def obs_categories(a):
        a.obs["sex"] = a.obs["sex"].cat.add_categories(["other"])

    def obs_value(a):
        a.obs.iloc[0, a.obs.columns.get_loc("age_years")] += 1

    def var_value(a):
        a.var.iloc[0, a.var.columns.get_loc("ensembl_id")] = "ENSG00000000000"

    def uns_nested(a):
        a.uns["aging_atlas"]["seed"] = -1

    return {
        "X-value": x_value,
        "X-indices": x_indices,
        "layer-added": lambda a: a.layers.__setitem__("counts", a.X.copy()),
        "obs-dtype": obs_dtype,
        "obs-categories": obs_categories,
        "obs-value": obs_value,
        "obs-column-added": lambda a: a.obs.__setitem__("new", 1),
        "var-value": var_value,
        "obsm-value": lambda a: a.obsm["aging_atlas_activity"].__setitem__((0, 0), -1.0),
        "varm-added": lambda a: a.varm.__setitem__("new", np.zeros((a.n_vars, 1))),
        "obsp-added": lambda a: a.obsp.__setitem__("d", sp.eye(a.n_obs, format="csr")),
        "varp-added": lambda a: a.varp.__setitem__("d", np.eye(a.n_vars)),
        "uns-nested": uns_nested,
        "obs_names": lambda a: setattr(a, "obs_names", [f"c{i}" for i in range(a.n_obs)]),
        "var_names": lambda a: setattr(a, "var_names", [f"g{i}" for i in range(a.n_vars)]),
        "raw-added": lambda a: setattr(a, "raw", a),
    }


@pytest.mark.parametrize("mutation", list(_mutations()))
def test_slot_hash_sees_every_slot(mutation):
    adata = raw()
    adata.uns["aging_atlas"] = dict(adata.uns["aging_atlas"])
    before = slot_hash(adata)
    assert slot_hash(adata) == before  # stable
    _mutations()[mutation](adata)
    assert slot_hash(adata) != before
