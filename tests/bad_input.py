"""Bad input to every public function: the machinery shared by the ``test_bad_input`` modules.

One table of cases (``CASES``), each a function, a readable id, a builder of the input object and
the call. An error case expects a :class:`ValueError` or :class:`TypeError` whose message names
the problem and hints at the fix (``match=`` on key words); every case checks with
:func:`slot_hash` that the input object is bit-for-bit unchanged afterwards (for a view: its
parent too). A few cases are inputs that must *work* (categorical and string obs columns, views,
backed AnnData, duplicated names where they are harmless, huge integer counts).

This module holds the hashing, the fixtures (a small simulated atlas and untrained tiny models,
built once per session), the generic cases every AnnData function gets, and :func:`run_case`;
each package's ``tests/<package>/test_bad_input.py`` adds its function-specific cases and runs
them, and :func:`check_coverage` fails when a public function of the package has no case.
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


def tmp_path_of(name: str) -> Path:
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
        mt.tl.attention(done, model=model, vocab=vocab, n_cells=20, **FAST)
        mt.tl.perturb(done, model=model, vocab=vocab, genes=[done.var_names[0]], n_cells=10, **FAST)
        mt.tl.evaluate(done, model=model, vocab=vocab, n_cells=10, n_contexts=1, **FAST)
        generated = mt.tl.generate(tok, model=model, vocab=vocab, n_cells=8, **FAST)
        prompts = mt.pp.trajectories(tok, n_prompts=6)
        path = tmp_path_of("files") / "atlas.h5ad"
        raw.write_h5ad(path)
        tok_path = tmp_path_of("files") / "tokenized.h5ad"
        done.write_h5ad(tok_path)
        store = tmp_path_of("files") / "store"
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
    "tl.embed": (tok, lambda d, **k: mt.tl.embed(d, model=M(), vocab=V(), **{**FAST, **k})),
    "tl.predict_time": (
        tok,
        lambda d, **k: mt.tl.predict_time(
            d, model=M(), vocab=V(), **{"n_contexts": 1, **FAST, **k}
        ),
    ),
    "tl.age_acceleration": (done, lambda d, **k: mt.tl.age_acceleration(d, **{"n_boot": 10, **k})),
    "tl.attention": (
        tok,
        lambda d, **k: mt.tl.attention(d, model=M(), vocab=V(), **{"n_cells": 10, **FAST, **k}),
    ),
    "tl.generate": (
        tok,
        lambda d, **k: mt.tl.generate(d, model=M(), vocab=V(), **{"n_cells": 4, **FAST, **k}),
    ),
    "tl.perturb": (
        tok,
        lambda d, **k: mt.tl.perturb(
            d,
            model=M(),
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
    "pl.perturb": (done, lambda d, **k: mt.pl.perturb(d, **{"show": False, **k})),
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
        "pl.perturb": None,
        "pl.predicted_age": r"no cell has both a finite .* run `mt\.tl\.predict_time`",
        "pl.age_acceleration": r"no cell of the groups .* run `mt\.tl\.predict_time`",
        "pl.explore": r"no group .* has cells at two or more ages.* pass another `groupby`",
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


def _resolve(built: Any) -> tuple[Any, list[Any]]:
    """The object to pass and the objects that must stay unchanged."""
    if isinstance(built, Guarded):
        return built.obj, [built.obj, built.parent]
    return built, [built]


def run_case(c: Case) -> None:
    """Run one case: the error (or success) it expects, and every guarded object unchanged."""
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


def cases_of(package: str) -> list[Case]:
    """The cases of one package's functions (``"pp"``, ``"tl"``, …)."""
    return [c for c in CASES if c.fn.split(".")[0] == package]


# functions of each package that take no AnnData (they have their own cases)
NOT_ADATA = ("pp.GeneVocab", "pp.PromptEncoder", "pp.TokenStore", "pp.tokenize_corpus",
             "pp.read_tokenized", "pl.savefig", "pl.training_curves")  # fmt: skip


def check_coverage(package: str) -> None:
    """Every public name of ``mt.<package>`` has an error case; AnnData functions are generic."""
    public = sorted(f"{package}.{n}" for n in getattr(mt, package).__all__)
    covered = {c.fn for c in CASES if c.exc is not None}
    missing = [name for name in public if name not in covered]
    assert not missing, f"public functions without a bad-input case: {missing}"
    if package in ("pp", "tl", "get", "pl"):
        takes_adata = [n for n in public if n not in NOT_ADATA]
        mine = sorted(n for n in ADATA_FUNCS if n.split(".")[0] == package)
        assert mine == takes_adata, "add the new function to ADATA_FUNCS"
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
