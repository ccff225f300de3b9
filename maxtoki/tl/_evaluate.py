from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import h5ad_safe, require_cells, resolve_modality
from ._predict_time import predict_ages
from ._utils import (
    as_generator,
    batch_size_of,
    cell_tokens,
    check_model,
    group_labels,
    max_genes_of,
    model_on_device,
    numeric_obs,
    positive_int,
    raw_counts,
    require_obs,
    rng_param,
    sample_contexts,
    table_to_uns,
    token_matrix,
    tokenize_like,
    vocab_columns,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab

Ablation = Literal["mask_context", "mask_query", "shuffle_genes"]
ABLATIONS: tuple[str, ...] = ("mask_context", "mask_query", "shuffle_genes")
METRIC_COLUMNS = (
    "split",
    "method",
    "n_cells",
    "n_donors",
    "median_abs_error_months",
    "pearson_r",
    "bias_months",
    "donor_median_abs_error_months",
    "donor_pearson_r",
    "singlet_fraction",
    "classifier_accuracy",
)


def evaluate(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab,
    heldout_cell_types: Sequence[str] | None = None,
    heldout_ages: tuple[float, float] | None = None,
    train_mask: np.ndarray | pd.Series | str | None = None,
    reference_key: str | None = "condition",
    reference: str = "control",
    time_key: str = "age_months",
    cell_type_key: str = "cell_type",
    sex_key: str = "sex",
    donor_key: str | None = "donor",
    n_contexts: int = 5,
    n_context_cells: int = 2,
    n_cells: int | None = 500,
    ablations: bool | Sequence[Ablation] = False,
    generated: AnnData | None = None,
    doublet_pairs: Literal["any", "same_type"] = "any",
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    rng: int | np.random.Generator | None = 0,
    key_added: str = "maxtoki_evaluate",
    mod: str = "rna",
) -> pd.DataFrame:
    """The paper's evaluation: age error on held-out cell types and ages, model vs baselines.

    Splits (reference cells only, e.g. controls):

    ``heldout_cell_type``
        Cells of ``heldout_cell_types`` (never seen in training), every age.
    ``heldout_age``
        Cells of the training cell types with an age in ``heldout_ages`` (months, inclusive);
        their contexts come from training ages only.

    Methods, each predicting the age (months) of up to ``n_cells`` cells per split:

    ``maxtoki``
        :func:`maxtoki.tl.predict_time` prompts: ``n_contexts`` trajectories of
        ``n_context_cells`` reference cells of the same cell type and sex from other donors,
        aggregated by the median.
    ``naive``
        The most common age of the cell's cell type and sex among the training cells (the
        sex's most common age for an unseen cell type).
    ``sgd``
        :class:`sklearn.linear_model.SGDRegressor` on log-normalised expression
        (``normalize_total`` to 10,000, ``log1p``, standardised), fitted on the training cells
        (target standardised too, for a stable fit).
    ``maxtoki_mask_context``, ``maxtoki_mask_query``, ``maxtoki_shuffle_genes``
        With ``ablations``: the context cells' genes replaced by ``<mask>``; the query's genes
        replaced by ``<mask>``; the gene order shuffled inside every cell ("bag of genes").
        Same contexts as ``maxtoki``.

    Metrics: median absolute error, Pearson r and mean error (bias) over cells, and the median
    absolute error and Pearson r of donor-averaged predictions (per donor and cell type:
    single-cell noise dominates the per-cell numbers).

    With ``generated`` (from :func:`maxtoki.tl.generate`) the generated cells are checked (split
    ``generated``). Every cell — real, simulated doublet, generated — is put through the same
    representation: its top ``max_genes`` ranked genes, expression reconstructed from ranks as in
    :func:`maxtoki.tl.generate`. Rows:

    ``doublet_classifier``
        A doublet detector trained on real cells: a histogram gradient-boosting classifier of
        real cells vs simulated doublets (raw counts of two real cells summed, then tokenized;
        ``doublet_pairs='any'`` pairs random cells as Scrublet/DoubletFinder do,
        ``'same_type'`` pairs cells of one cell type). ``singlet_fraction`` is the share of
        generated cells it calls real; ``classifier_accuracy`` its accuracy on held-out real
        cells and doublets.
    ``doublet_classifier_random_genes``
        The same detector on a negative control: cells of as many random vocabulary genes.
        A doublet detector only recognises mixtures of real cells, so this control is often
        called "singlet" too; read the two-sample rows below for realism.
    ``real_vs_generated``, ``real_vs_random_genes``
        A classifier two-sample test: cross-validated accuracy of a classifier told to separate
        real cells from generated (or random-gene) cells; 0.5 means indistinguishable.

    Parameters
    ----------
    adata
        Tokenized AnnData (or MuData) with raw counts, ages, cell types, sexes and donors.
    model
        A temporal (stage 2) :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    heldout_cell_types
        Cell types kept out of training; default ``uns['aging_atlas']['heldout_cell_types']``.
    heldout_ages
        ``(low, high)`` months kept out of training, or ``None`` (no held-out-age split).
    train_mask
        The training cells (bool mask, ``obs`` column or ``None``: reference cells outside the
        held-out cell types and ages). Baselines are fitted on them.
    reference_key, reference
        ``obs`` column and value of the reference (healthy) cells: splits, contexts and
        training cells are drawn from them. ``reference_key=None`` uses every cell.
    time_key, cell_type_key, sex_key, donor_key
        ``obs`` columns of age (months), cell type, sex and donor.
    n_contexts, n_context_cells
        Contexts per query cell and cells per context.
    n_cells
        Cells evaluated per split (a random subset; ``None`` for all).
    ablations
        ``True`` for all of ``('mask_context', 'mask_query', 'shuffle_genes')`` or a subset.
    generated
        Generated cells (from :func:`maxtoki.tl.generate`) for the doublet and two-sample checks.
    doublet_pairs
        ``'any'`` (random pairs of real cells) or ``'same_type'`` for the simulated doublets.
    max_genes
        Top-ranked genes kept per cell: pass the ``max_genes_per_cell`` the model was trained with
        (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else every gene up to the model's context.
    batch_size
        Prompts per forward pass.
    device
        ``'auto'``, ``'cpu'``, ``'cuda'``…
    rng
        Seed or generator (subsets, contexts, ablations, baselines).
    key_added
        ``uns`` key of the stored table.
    mod
        Modality of MuData inputs.

    Returns
    -------
    The table (one row per split and method; columns ``split``, ``method``, ``n_cells``,
    ``n_donors``, ``median_abs_error_months``, ``pearson_r``, ``bias_months``,
    ``donor_median_abs_error_months``, ``donor_pearson_r``, ``singlet_fraction``,
    ``classifier_accuracy``; metrics that do not apply are ``nan``). Also writes
    ``uns[key_added]['table']`` (columns) and ``uns[key_added]['params']``;
    :func:`maxtoki.get.evaluate` reads it back.
    """
    start = logg.info("evaluating MaxToki against the naive and linear baselines")
    adata, mdata = resolve_modality(adata, mod)
    require_cells(adata)
    check_model(model, vocab, need_time=True, what="`mt.tl.evaluate`")
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    n_cells = positive_int("n_cells", n_cells, optional=True)
    if doublet_pairs not in ("any", "same_type"):
        raise ValueError(f"doublet_pairs must be 'any' or 'same_type', got {doublet_pairs!r}")
    if generated is not None:
        resolve_modality(generated, mod)  # its type before the long predictions
    tokens = token_matrix(adata, vocab)
    ages = numeric_obs(adata, time_key, "data", "pass `time_key=` naming ages in months")
    for key, fix in ((cell_type_key, "pass `cell_type_key=`"), (sex_key, "pass `sex_key=`")):
        require_obs(adata, key, fix)
    if donor_key is not None:
        require_obs(adata, donor_key, "pass `donor_key=` (or None)")
    obs = adata.obs
    ctype = obs[cell_type_key].astype(str).to_numpy()
    sex = obs[sex_key].astype(str).to_numpy()
    donors = (
        obs[donor_key].astype(str).to_numpy()
        if donor_key
        else np.asarray(np.asarray(adata.obs_names, dtype=str))
    )
    is_ref = np.isfinite(ages)
    if reference_key is not None:
        require_obs(adata, reference_key, "pass `reference_key=` (or None to use every cell)")
        is_ref &= (obs[reference_key].astype(str) == str(reference)).to_numpy()
    if heldout_cell_types is None:
        atlas = adata.uns.get("aging_atlas", {})
        heldout_cell_types = list(np.asarray(atlas.get("heldout_cell_types", []), dtype=str))
    heldout_cell_types = (
        [heldout_cell_types]
        if isinstance(heldout_cell_types, str)
        else [str(t) for t in heldout_cell_types]
    )
    unknown = sorted(set(heldout_cell_types) - set(ctype))
    if unknown:
        raise ValueError(
            f"heldout_cell_types {unknown} are not values of obs[{cell_type_key!r}]; pass cell "
            f"types from {sorted(set(ctype))[:8]}"
        )
    in_ho_type = np.isin(ctype, heldout_cell_types)
    in_ho_age = np.zeros(adata.n_obs, dtype=bool)
    if heldout_ages is not None:
        lo_age, hi_age = (float(v) for v in heldout_ages)
        if hi_age < lo_age:
            raise ValueError(f"heldout_ages must be (low, high) months, got {heldout_ages}")
        in_ho_age = (ages >= lo_age) & (ages <= hi_age)
    train = _train_mask(adata, train_mask, is_ref & ~in_ho_type & ~in_ho_age)
    if not train.any():
        raise ValueError("no training cells: check `train_mask`, `heldout_*` and `reference`")
    splits: dict[str, np.ndarray] = {}
    if heldout_cell_types:
        splits["heldout_cell_type"] = np.flatnonzero(is_ref & in_ho_type)
    if heldout_ages is not None:
        splits["heldout_age"] = np.flatnonzero(is_ref & in_ho_age & ~in_ho_type)
    splits = {k: v for k, v in splits.items() if len(v)}
    if not splits and generated is None:
        raise ValueError(
            "nothing to evaluate: pass `heldout_cell_types` and/or `heldout_ages` that match "
            "reference cells (or `generated` cells for the doublet check)"
        )
    if ablations is True:
        ablations = ABLATIONS
    elif ablations is False or ablations is None:
        ablations = ()
    else:
        ablations = tuple([ablations] if isinstance(ablations, str) else ablations)
        bad = sorted(set(ablations) - set(ABLATIONS))
        if bad:
            raise ValueError(f"unknown ablations {bad}; choose from {ABLATIONS}")
    gen = as_generator(rng)
    for k, v in splits.items():
        if n_cells is not None and len(v) > n_cells:
            splits[k] = np.sort(gen.choice(v, int(n_cells), replace=False))

    naive = _naive(ctype, sex, ages, train)
    sgd = _sgd(
        adata,
        ages,
        train,
        np.unique(np.concatenate(list(splits.values()))) if splits else np.zeros(0, int),
        gen,
    )
    dev = model_on_device(model, device)
    cells = cell_tokens(tokens)
    groups = group_labels(obs, (cell_type_key, sex_key), "data")
    rows = []
    for split, q in splits.items():
        # contexts: reference cells of the same type and sex, other donors; for held-out ages
        # only training ages
        pool = np.flatnonzero(is_ref & (~in_ho_age if split == "heldout_age" else True))
        pos = np.full(adata.n_obs, -1)
        pos[pool] = np.arange(len(pool))
        contexts = sample_contexts(
            groups[q], donors[q], pos[q], groups[pool], donors[pool], ages[pool],
            n_contexts=int(n_contexts), n_cells=int(n_context_cells), gen=gen,
            group_by=(cell_type_key, sex_key),
        )  # fmt: skip
        ref_cells = [cells[i] for i in pool]
        variants = {"maxtoki": (ref_cells, [cells[i] for i in q])}
        for ab in ablations:
            ab_gen = np.random.default_rng(gen.integers(2**31))
            variants[f"maxtoki_{ab}"] = _ablate(ab, ref_cells, [cells[i] for i in q], vocab, ab_gen)
        truth = ages[q]
        unit = np.char.add(np.char.add(donors[q].astype(str), "|"), ctype[q].astype(str))
        for method, (rc, qc) in variants.items():
            pred, _ = predict_ages(
                model, vocab, ref_cells=rc, ref_times=ages[pool], query_cells=qc, contexts=contexts,
                max_genes=max_genes, batch_size=size, device=dev, desc=f"evaluate {split} {method}",
            )  # fmt: skip
            rows.append(_metrics(split, method, np.median(pred, axis=1), truth, unit, donors[q]))
        rows.append(_metrics(split, "naive", naive[q], truth, unit, donors[q]))
        rows.append(_metrics(split, "sgd", sgd[q], truth, unit, donors[q]))
    if generated is not None:
        rows += _doublet_check(
            adata, tokens, ctype, generated, vocab, max_genes, gen, mod, doublet_pairs
        )
    table = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    adata.uns[key_added] = {
        "table": table_to_uns(table),
        "params": h5ad_safe(
            {
                "heldout_cell_types": list(heldout_cell_types),
                "heldout_ages": heldout_ages,
                "train_mask": "given"
                if train_mask is not None
                else "reference cells outside the held-out sets",
                "n_train_cells": int(train.sum()),
                "reference_key": reference_key,
                "reference": reference,
                "time_key": time_key,
                "cell_type_key": cell_type_key,
                "sex_key": sex_key,
                "donor_key": donor_key,
                "n_contexts": int(n_contexts),
                "n_context_cells": int(n_context_cells),
                "n_cells": n_cells,
                "ablations": list(ablations),
                "aggregate": "median",
                "max_genes": max_genes,
                "device": dev,
                "rng": rng_param(rng),
                "unit": "months",
            }
        ),
    }
    if mdata is not None:
        mdata.uns[key_added] = adata.uns[key_added]
    logg.info(f"    added uns[{key_added!r}] ({len(table)} rows)", time=start)
    return table


def _train_mask(adata: AnnData, train_mask: Any, default: np.ndarray) -> np.ndarray:
    if train_mask is None:
        return default
    if isinstance(train_mask, str):
        require_obs(adata, train_mask, "pass a boolean obs column (or mask) as `train_mask`")
        train_mask = adata.obs[train_mask]
    if isinstance(train_mask, pd.Series):
        train_mask = train_mask.reindex(adata.obs_names).fillna(False).to_numpy()
    mask = np.asarray(train_mask)
    if mask.dtype != bool or mask.shape != (adata.n_obs,):
        raise ValueError(f"train_mask must be a boolean mask over the {adata.n_obs} cells")
    return mask


# --- baselines ----------------------------------------------------------------------------------
def _mode(values: np.ndarray) -> float:
    vals, counts = np.unique(values, return_counts=True)
    return float(vals[np.argmax(counts)])  # ties: the youngest of the most common ages


def _naive(ctype: np.ndarray, sex: np.ndarray, ages: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Most common training age of the cell's type and sex (else of its sex, else overall)."""
    df = pd.DataFrame({"t": ctype[train], "s": sex[train], "a": ages[train]})
    by_ts: Mapping = {k: _mode(g["a"].to_numpy()) for k, g in df.groupby(["t", "s"])}
    by_s: Mapping = {k: _mode(g["a"].to_numpy()) for k, g in df.groupby("s")}
    overall = _mode(df["a"].to_numpy())
    return np.array(
        [by_ts.get((t, s), by_s.get(s, overall)) for t, s in zip(ctype, sex, strict=True)],
        dtype=float,
    )


def _sgd(
    adata: AnnData,
    ages: np.ndarray,
    train: np.ndarray,
    targets: np.ndarray,
    gen,
    max_train: int = 20000,
) -> np.ndarray:
    """SGDRegressor on standardised log-normalised expression; predictions at ``targets``."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ._generate import _log_normalised

    out = np.full(adata.n_obs, np.nan)
    if len(targets) == 0:
        return out
    fit_rows = np.flatnonzero(train)
    if len(fit_rows) > max_train:
        fit_rows = np.sort(gen.choice(fit_rows, max_train, replace=False))
    seed = int(gen.integers(2**31 - 1))
    model = TransformedTargetRegressor(
        regressor=make_pipeline(
            StandardScaler(with_mean=True),
            # the default inverse-scaling step size diverges on ~1,000 standardised genes
            SGDRegressor(
                random_state=seed,
                alpha=1e-3,
                max_iter=2000,
                tol=1e-4,
                learning_rate="adaptive",
                eta0=1e-3,
            ),
        ),
        transformer=StandardScaler(),
    )
    model.fit(_log_normalised(adata, fit_rows).toarray(), ages[fit_rows])
    out[targets] = model.predict(_log_normalised(adata, targets).toarray())
    return out


# --- metrics ------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _metrics(
    split: str,
    method: str,
    pred: np.ndarray,
    truth: np.ndarray,
    unit: np.ndarray,
    donors: np.ndarray,
) -> dict:
    err = pred - truth
    df = pd.DataFrame({"u": unit, "p": pred, "t": truth}).groupby("u").mean()
    return {
        "split": split,
        "method": method,
        "n_cells": len(pred),
        "n_donors": len(np.unique(donors)),
        "median_abs_error_months": float(np.median(np.abs(err))),
        "pearson_r": _pearson(pred, truth),
        "bias_months": float(np.mean(err)),
        "donor_median_abs_error_months": float(np.median(np.abs(df["p"] - df["t"]))),
        "donor_pearson_r": _pearson(df["p"].to_numpy(), df["t"].to_numpy()),
        "singlet_fraction": np.nan,
        "classifier_accuracy": np.nan,
    }


# --- ablations ----------------------------------------------------------------------------------
def _ablate(
    kind: str, ref_cells: list, query_cells: list, vocab: GeneVocab, gen: np.random.Generator
):
    def mask(cell):
        out = cell.copy()
        out[1:-1] = vocab.mask_id
        return out

    def shuffle(cell):
        out = cell.copy()
        out[1:-1] = gen.permutation(out[1:-1])
        return out

    if kind == "mask_context":
        return [mask(c) for c in ref_cells], query_cells
    if kind == "mask_query":
        return ref_cells, [mask(c) for c in query_cells]
    return [shuffle(c) for c in ref_cells], [shuffle(c) for c in query_cells]


# --- doublet check ------------------------------------------------------------------------------
def _doublet_check(
    adata, tokens, ctype, generated, vocab, max_genes, gen, mod, pairs, n_real: int = 2000
) -> list[dict]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score, train_test_split

    from ._generate import rank_expression_map, reconstruct_expression

    gdata, _ = resolve_modality(generated, mod)
    g_tokens = token_matrix(gdata, vocab)
    cols = vocab_columns(adata, vocab)
    if max_genes is None:
        max_genes = int((g_tokens != 0).sum(1).max()) - 2
    real = np.sort(gen.choice(adata.n_obs, min(n_real, adata.n_obs), replace=False))
    # doublets: counts of two real cells summed, then tokenized like real cells
    first = gen.choice(adata.n_obs, len(real))
    if pairs == "same_type":
        by_type = pd.Series(np.arange(adata.n_obs)).groupby(ctype).indices
        second = np.array([gen.choice(by_type[ctype[i]]) for i in first])
    else:
        second = gen.choice(adata.n_obs, len(real))
    counts = raw_counts(adata)
    d_tokens = tokenize_like(counts[first] + counts[second], adata, vocab)
    # negative control: as many random vocabulary genes as each generated cell has
    n_gen = (g_tokens != 0).sum(1) - 2
    present = cols.token_ids
    control = np.zeros((len(n_gen), max_genes + 2), dtype=np.int64)
    for i, n in enumerate(np.minimum(n_gen, max_genes)):
        control[i, 0], control[i, n + 1] = vocab.bos_id, vocab.eos_id
        control[i, 1 : n + 1] = gen.choice(present, n, replace=False)

    emap = rank_expression_map(adata, tokens, vocab)

    def features(tok):  # the same representation for every cell: top genes, rank → expression
        return reconstruct_expression(_truncate(tok, max_genes), emap, cols, vocab).toarray()

    X = np.vstack([features(tokens[real]), features(d_tokens)])
    y = np.r_[np.zeros(len(real)), np.ones(len(first))]
    seed = int(gen.integers(2**31 - 1))
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    clf = HistGradientBoostingClassifier(random_state=seed).fit(Xtr, ytr)
    acc = float(clf.score(Xte, yte))
    g_feats, c_feats = features(g_tokens), features(control)
    rows = []
    for method, feats in (
        ("doublet_classifier", g_feats),
        ("doublet_classifier_random_genes", c_feats),
    ):
        singlets = float(np.mean(clf.predict(feats) == 0))
        rows.append(_row(method, len(feats), singlet_fraction=singlets, classifier_accuracy=acc))
    # two-sample test: can a classifier tell generated (or random) cells from real ones?
    for method, feats in (("real_vs_generated", g_feats), ("real_vs_random_genes", c_feats)):
        pick = gen.choice(len(real), min(len(real), len(feats)), replace=False)
        Xc = np.vstack([X[: len(real)][pick], feats])
        yc = np.r_[np.zeros(len(pick)), np.ones(len(feats))]
        folds = int(min(5, len(pick), len(feats)))
        score = np.nan
        if folds >= 2:
            score = float(
                cross_val_score(
                    HistGradientBoostingClassifier(random_state=seed), Xc, yc, cv=folds
                ).mean()
            )
        rows.append(_row(method, len(feats), classifier_accuracy=score))
    return rows


def _row(method: str, n: int, **values) -> dict:
    base = dict.fromkeys(METRIC_COLUMNS, np.nan)
    return base | {"split": "generated", "method": method, "n_cells": n, "n_donors": 0} | values


def _truncate(tokens: np.ndarray, max_genes: int) -> np.ndarray:
    """Keep ``<bos>``, the top ``max_genes`` genes and ``<eos>`` of each row."""
    out = np.zeros((len(tokens), max_genes + 2), dtype=np.int64)
    for i, row in enumerate(tokens):
        n = int((row != 0).sum())
        genes = row[1 : n - 1][:max_genes]
        out[i, 0] = row[0]
        out[i, 1 : 1 + len(genes)] = genes
        out[i, 1 + len(genes)] = row[n - 1]
    return out
