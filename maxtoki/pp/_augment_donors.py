"""Pseudo-donor copies of training cells (``mt.pp.augment_donors``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import logging as logg
from .._anndata import is_number, positive_int, require_cells, resolve_modality
from .._docs import inject_docs

if TYPE_CHECKING:
    from anndata import AnnData

#: Cells a donor needs in a stratum to enter the estimate of ``sigma`` (two halves of two or more)
MIN_CELLS = 4
#: Genes enter the estimate when their mean normalised expression (per 10,000 counts) is above this
MIN_MEAN = 1.0


@inject_docs
def augment_donors(
    adata: Any,
    *,
    n_copies: int = 2,
    sigma: float | None = None,
    donor_key: str = "donor",
    groupby: str | Sequence[str] = "cell_type",
    time_key: str = "age_months",
    layer: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    mod: str = "rna",
) -> AnnData:
    """Training cells plus copies of every donor under a new, random donor effect.

    A model trained on a few dozen donors, each of one age, can read a donor's own expression
    (its genes' donor effect) as age, and then err by the same amount on every cell of a new
    donor. Each copy of a donor multiplies every gene's counts by ``exp(u_g)``, with
    ``u_g ~ N(0, sigma²)`` drawn once per donor and copy and shared by all of that copy's cells:
    the same cells and ages under another donor effect, so only what changes with age stays
    tied to age. Tokenize the result with the vocabulary of the cells given (tokens are not
    carried over) and train on it; read and evaluate real cells only.

    ``sigma=None`` estimates the donor effect's standard deviation from the data: per stratum of
    ``groupby``, each donor's pseudo-bulk ``log1p`` expression (per 10,000 counts, genes above
    a mean of 1) less the mean of its two donors nearest in ``time_key``, less the sampling
    noise of the donor means (from two random halves of each donor's cells); the median over
    genes. ``log1p`` compresses low expression, so the estimate runs low: 0.18 / 0.35 / 0.07 on
    atlases simulated with donor effects of 0.25 / 0.5 / 0.1 (``tests/pp/test_augment_donors.py``).

    Parameters
    ----------
    adata
        AnnData or MuData (see ``mod``) of raw counts with ``obs[donor_key]``.
    n_copies
        Copies of every donor added to the cells given.
    sigma
        Standard deviation of the donor effect on log expression (0–2); ``None`` estimates it.
    donor_key
        Column of ``obs`` naming each cell's donor.
    groupby
        Column(s) of ``obs`` within which donors are compared to estimate ``sigma`` (cell type,
        and sex where its genes differ).
    time_key
        Column of ``obs`` with each cell's age; donors are compared with those nearest in age.
    layer
        Layer with raw counts; ``None`` uses ``X``.
    random_state
        Seed or generator of the halves and the donor effects.
    {mod}

    Returns
    -------
    A new AnnData: the cells given, then each copy (``obs_names`` with ``-copy{{k}}``, donors
    ``{{donor}}-copy{{k}}``, ``obs['augmented_copy']`` 0 for the cells given, ``k`` for copy
    ``k``); ``X`` the counts as float32 CSR, ``obs['n_counts']`` their totals where the input
    had the column, ``uns['augment_donors']`` the ``sigma`` used, whether it was estimated, and
    ``n_copies``. The input is left unchanged.
    """
    from anndata import AnnData

    adata, _ = resolve_modality(adata, mod)
    require_cells(adata)
    n_copies = positive_int("n_copies", n_copies)
    if sigma is not None and not (is_number(sigma) and 0 <= sigma <= 2):
        raise ValueError(f"sigma must be None or a number in [0, 2], got {sigma!r}")
    obs = adata.obs
    groups = [groupby] if isinstance(groupby, str) else list(groupby)
    needed = [donor_key] + ([time_key, *groups] if sigma is None else [])
    missing = [key for key in needed if key not in obs.columns]
    if missing:
        raise ValueError(
            f"obs has no column(s) {missing}; name the donor column with donor_key= and, to "
            "estimate sigma, the age with time_key= and the strata with groupby= (or pass sigma=)"
        )
    X = adata.layers[layer] if layer is not None else adata.X
    X = sp.csr_matrix(X, dtype=np.float32)
    if X.nnz and (not np.isfinite(X.data).all() or X.data.min() < 0):
        raise ValueError("the counts hold negative or non-finite values; pass raw counts")
    gen = np.random.default_rng(random_state)
    estimated = sigma is None
    if estimated:
        sigma = _donor_sigma(X, obs, donor_key, groups, time_key, gen)
    donors = pd.Categorical(obs[donor_key].astype(str))
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    parts, tables = [X], [obs.assign(augmented_copy=0)]
    for k in range(1, n_copies + 1):
        effect = gen.normal(0.0, sigma, (len(donors.categories), X.shape[1])).astype(np.float32)
        copy = X.copy()
        copy.data *= np.exp(effect[donors.codes[rows], X.indices])
        parts.append(copy)
        table = obs.assign(augmented_copy=k)
        table[donor_key] = [f"{d}-copy{k}" for d in obs[donor_key].astype(str)]
        table.index = [f"{name}-copy{k}" for name in obs.index]
        tables.append(table)
    X_all = sp.vstack(parts, format="csr")
    obs_all = pd.concat(tables)
    obs_all[donor_key] = obs_all[donor_key].astype(str).astype("category")
    if "n_counts" in obs.columns:
        obs_all["n_counts"] = np.asarray(X_all.sum(axis=1)).ravel()
    out = AnnData(X_all, obs=obs_all, var=adata.var.copy())
    out.uns["augment_donors"] = {
        "sigma": float(sigma),
        "estimated": estimated,
        "n_copies": n_copies,
    }
    how = "estimated" if estimated else "given"
    logg.info(f"added {n_copies} cop{'y' if n_copies == 1 else 'ies'} of {len(donors.categories)} "
              f"donors (sigma {sigma:.3f}, {how}): {out.n_obs:,} cells")  # fmt: skip
    return out


def _donor_sigma(X, obs, donor_key, groups, time_key, gen) -> float:
    """The donor effect's standard deviation on log expression, from pseudo-bulk donor means."""
    totals = np.asarray(X.sum(axis=1)).ravel()
    normalised = sp.diags(1e4 / np.maximum(totals, 1.0)) @ X
    genes = np.asarray(normalised.mean(axis=0)).ravel() > MIN_MEAN
    normalised = sp.csr_matrix(normalised[:, genes])
    times = pd.to_numeric(obs[time_key], errors="coerce").to_numpy(dtype=float)
    excess = []
    keys = [obs[g].astype(str).to_numpy() for g in groups] + [obs[donor_key].astype(str).to_numpy()]
    frame = pd.DataFrame({f"k{i}": key for i, key in enumerate(keys)})
    for _, stratum in frame.groupby([f"k{i}" for i in range(len(groups))], sort=True):
        means, noise, ages = [], [], []
        for _, cells in stratum.groupby(f"k{len(groups)}", sort=True):
            idx = cells.index.to_numpy()
            if len(idx) < MIN_CELLS or not np.isfinite(times[idx]).all():
                continue
            half = gen.permutation(idx)
            first, second = half[: len(idx) // 2], half[len(idx) // 2 :]
            means.append(_log_mean(normalised, idx))
            noise.append((_log_mean(normalised, first) - _log_mean(normalised, second)) ** 2 / 4)
            ages.append(times[idx].mean())
        if len(means) < 3:
            continue
        ages = np.asarray(ages)
        for i in range(len(means)):
            near = [j for j in np.argsort(np.abs(ages - ages[i]), kind="stable") if j != i][:2]
            residual = means[i] - (means[near[0]] + means[near[1]]) / 2
            sampling = noise[i] + (noise[near[0]] + noise[near[1]]) / 4
            excess.append(residual**2 - sampling)
    if not excess or not genes.any():
        raise ValueError(
            f"cannot estimate sigma: no stratum of {groups} has 3 donors with {MIN_CELLS}+ cells "
            "each and expressed genes; pass sigma= (the donor effect's SD on log expression)"
        )
    # a donor's residual against the mean of two others carries 1 + 1/2 donor effects
    variance = np.mean(excess, axis=0) / 1.5
    return float(np.sqrt(max(float(np.median(variance)), 0.0)))


def _log_mean(normalised: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """``log1p`` of the mean normalised expression of ``rows``, per gene."""
    return np.log1p(np.asarray(normalised[rows].mean(axis=0)).ravel())
