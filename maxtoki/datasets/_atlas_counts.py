"""Counts of the simulated aging atlas: program activities, expected counts, CSR sampling.

Used only by :mod:`maxtoki.datasets._aging_atlas` (see its docstring for the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .. import logging as logg

if TYPE_CHECKING:
    from ._aging_atlas import _Atlas
    from ._atlas_genes import _Genes

_CHUNK_ELEMENTS = 3_000_000  # cells x genes generated at once (~12 MB per float32 array)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _shared_activity(t: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Activity (about 0–1) of the shared programs at age ``t`` in years; shape ``(n, 7)``."""
    t = np.asarray(t, dtype=np.float64)
    female = np.asarray(female, dtype=bool)
    horm_f = _sigmoid((t - 12.5) / 1.5) * (1.0 - 0.85 * _sigmoid((t - 50.0) / 2.5))
    horm_m = _sigmoid((t - 13.5) / 1.5) * (1.0 - 0.5 * np.clip((t - 30.0) / 60.0, 0.0, 1.0))
    return np.stack(
        [
            np.exp(-t / 7.0),  # development: high at birth, gone by the twenties
            np.exp(-0.5 * ((t - 20.0) / 8.0) ** 2),  # maturation: peaks at 20 years
            np.exp(-0.5 * ((t - 50.0) / 12.0) ** 2),  # midlife: peaks at 50 years
            _sigmoid((t - 60.0) / 10.0),  # inflammaging: rises late
            t / 90.0,  # senescence: linear increase
            1.0 - (t / 95.0) ** 2,  # proteostasis: slow, then faster decline
            np.where(female, horm_f, horm_m),  # sex hormones: puberty, menopause / slow decline
        ],
        axis=1,
    )


def _private_activity(t: np.ndarray, midpoints: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Activity of the cell-type-specific programs (monotonic sigmoids); shape ``(n, n_types)``."""
    up = _sigmoid((np.asarray(t, dtype=np.float64)[:, None] - midpoints[None, :]) / 15.0)
    return np.where(directions[None, :] > 0, up, 1.0 - up)


def _grow(buffer: np.ndarray, size: int) -> np.ndarray:
    """Resize a 1-d buffer in place where possible (no second copy in memory)."""
    try:
        buffer.resize(size, refcheck=False)
    except ValueError:  # not owning its memory
        buffer = np.resize(buffer, size)
    return buffer


# --------------------------------------------------------------------------------------- counts
@dataclass
class _ExpressionModel:
    """Per-gene terms of the log-means shared by every chunk of cells (mostly float32)."""

    shared_female: np.ndarray  # 1 x genes: baseline + sex effects of a female cell
    shared_male: np.ndarray
    offset: np.ndarray  # cell types x genes
    disease: np.ndarray  # marker sets x genes
    loadings_t: np.ndarray  # latent factors x genes
    r_nb: np.ndarray  # negative-binomial size
    is_hk: np.ndarray  # housekeeping genes
    hk_share: np.ndarray  # per cell type: housekeeping share of the library (float64)


def _expression_model(genes: _Genes) -> _ExpressionModel:
    """Precompute the per-gene terms of the log-means (and the housekeeping share per type)."""
    base, sex_eff, offset = genes.base, genes.sex_eff, genes.offset
    is_hk = genes.kind == "housekeeping"
    type_weights = np.exp(base[None, :] + offset)
    return _ExpressionModel(
        shared_female=np.ascontiguousarray(base[None, :] + sex_eff[0][None, :], dtype=np.float32),
        shared_male=np.ascontiguousarray(base[None, :] + sex_eff[1][None, :], dtype=np.float32),
        offset=offset.astype(np.float32),
        disease=genes.disease_eff.astype(np.float32),
        loadings_t=np.ascontiguousarray(genes.loadings.T, dtype=np.float32),
        r_nb=genes.r_nb.astype(np.float32),
        is_hk=is_hk,
        hk_share=type_weights[:, is_hk].sum(axis=1) / type_weights.sum(axis=1),
    )


def _chunk_activity(atlas: _Atlas, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Program activities of cells ``lo:hi`` (float64, cells x programs).

    The programs' curves at the cells' biological age, plus the donor deviation and cell noise.
    """
    programs, n_shared = atlas.programs, atlas.programs.n_shared
    m = hi - lo
    d = atlas.cells.donor[lo:hi]
    female = atlas.donors.female[d]
    t_years = atlas.cells.bio_age[lo:hi] / 12.0
    act = np.empty((m, programs.n_programs))
    act[:, :n_shared] = _shared_activity(t_years, female)
    act[:, n_shared:] = _private_activity(
        t_years, programs.private_midpoint, programs.private_direction
    )
    act += atlas.donors.program_deviation[d] + rng.normal(
        0.0, atlas.p.cell_noise, (m, programs.n_programs)
    )
    return act


def _chunk_means(
    atlas: _Atlas,
    model: _ExpressionModel,
    act: np.ndarray,
    lo: int,
    hi: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Expected counts of cells ``lo:hi`` given their program activities (float32).

    The latent factors add TF noise to the activities and apply each type's gain and shift; the
    log-means add the per-gene terms, the donor effects and the disease markers. Housekeeping
    genes keep a fixed share of the library (flat after normalisation); the rest of the library
    is spread over the other genes by a softmax.
    """
    programs, cells, donors = atlas.programs, atlas.cells, atlas.donors
    m = hi - lo
    d, k = cells.donor[lo:hi], cells.cell_type[lo:hi]
    female = donors.female[d]
    fp = programs.factor_program
    tf_noise_sd = 0.5 * atlas.p.cell_noise
    z = programs.gain[k][:, fp] * (
        act[:, fp] + rng.normal(0.0, tf_noise_sd, (m, programs.n_factors))
    ) + programs.shift[k][:, fp]  # fmt: skip
    eta = z.astype(np.float32) @ model.loadings_t
    eta += np.where(female[:, None], model.shared_female, model.shared_male)
    eta += model.offset[k]
    eta += donors.effect[d]
    rows = np.flatnonzero(cells.marker_cell[lo:hi])
    if rows.size:
        eta[rows] += model.disease[atlas.conditions.marker_row[cells.condition[lo + rows]]]
    eta -= eta.max(axis=1, keepdims=True)
    np.exp(eta, out=eta)
    is_hk, hk_share = model.is_hk, model.hk_share
    lib = np.exp(cells.log_lib[lo:hi])
    scale_hk = lib * hk_share[k] / eta[:, is_hk].sum(axis=1, dtype=np.float64)
    scale_rest = lib * (1.0 - hk_share[k]) / eta[:, ~is_hk].sum(axis=1, dtype=np.float64)
    eta *= np.where(
        is_hk[None, :],
        scale_hk[:, None].astype(np.float32),
        scale_rest[:, None].astype(np.float32),
    )
    return eta


def _sample_counts(
    mu: np.ndarray, r_nb: np.ndarray, dropout: float, rng: np.random.Generator
) -> np.ndarray:
    """Negative-binomial (gamma-Poisson) counts with mean ``mu`` and size ``r_nb``.

    Then extra dropout of lowly expressed genes, with probability
    ``dropout * sigmoid(-1.5 log(mu))``.
    """
    m, n_genes = mu.shape
    lam = rng.standard_gamma(np.broadcast_to(r_nb, (m, n_genes)), dtype=np.float32)
    lam *= mu / r_nb
    counts = rng.poisson(lam)
    if dropout > 0:
        p_drop = dropout * _sigmoid(-1.5 * np.log(np.maximum(mu, 1e-12)))
        counts[rng.random((m, n_genes), dtype=np.float32) < p_drop] = 0
    return counts


class _CsrBuffers:
    """CSR data and column indices, filled chunk by chunk into buffers sized from the first."""

    def __init__(self, n_cells: int, n_genes: int) -> None:
        self.shape = (n_cells, n_genes)
        self.data = np.zeros(0, dtype=np.int32)
        self.indices = np.zeros(0, dtype=np.int32)
        self.nnz = 0
        self.row_nnz = np.zeros(n_cells, dtype=np.int64)
        self.n_counts = np.zeros(n_cells, dtype=np.int64)  # total counts per cell

    def add_rows(self, lo: int, counts: np.ndarray) -> None:
        """Append the non-zeros of the dense ``counts`` of cells ``lo:lo + len(counts)``."""
        n_cells, n_genes = self.shape
        m = counts.shape[0]
        hi = lo + m
        nnz = self.nnz
        flat = np.flatnonzero(counts)
        if nnz + flat.size > self.data.size:
            estimate = int(1.05 * (nnz + flat.size) / hi * n_cells) + 1024
            capacity = max(estimate, nnz + flat.size, int(1.25 * self.data.size))
            self.data = _grow(self.data, capacity)
            self.indices = _grow(self.indices, capacity)
        self.data[nnz : nnz + flat.size] = counts.ravel()[flat]
        self.indices[nnz : nnz + flat.size] = flat % n_genes
        self.nnz = nnz + flat.size
        self.row_nnz[lo:hi] = np.bincount(flat // n_genes, minlength=m)
        self.n_counts[lo:hi] = counts.sum(axis=1)

    def to_csr(self) -> sp.csr_matrix:
        """The CSR matrix (int32 ``indptr`` where it fits), the buffers trimmed to ``nnz``."""
        n_cells, _ = self.shape
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(self.row_nnz, out=indptr[1:])
        if self.nnz < self.data.size:  # give back the unused tail of the buffers
            self.data = _grow(self.data, self.nnz)
            self.indices = _grow(self.indices, self.nnz)
        if self.nnz <= np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        return sp.csr_matrix((self.data, self.indices, indptr), shape=self.shape, copy=False)


def _simulate_counts(
    atlas: _Atlas, rng: np.random.Generator
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Generate the counts in chunks of cells straight into CSR buffers.

    Parameters
    ----------
    atlas
        Everything drawn before the counts.
    rng
        The cells' random stream, right after :func:`_sample_cells` drew from it.

    Returns
    -------
    The raw counts (cells x genes, int32), the total counts of each cell (int64) and the
    program activities (cells x programs, float32).
    """
    p = atlas.p
    n_cells, n_genes = p.n_cells, p.n_genes
    model = _expression_model(atlas.genes)
    activity = np.empty((n_cells, atlas.programs.n_programs), dtype=np.float32)
    buffers = _CsrBuffers(n_cells, n_genes)
    chunk = max(1, _CHUNK_ELEMENTS // n_genes)
    with logg._progress_bar(n_cells, desc="aging_atlas", show=n_cells > chunk) as bar:
        for lo in range(0, n_cells, chunk):
            hi = min(n_cells, lo + chunk)
            act = _chunk_activity(atlas, lo, hi, rng)
            activity[lo:hi] = act
            mu = _chunk_means(atlas, model, act, lo, hi, rng)
            buffers.add_rows(lo, _sample_counts(mu, model.r_nb, p.dropout, rng))
            del act, mu
            bar.update(hi - lo)
    return buffers.to_csr(), buffers.n_counts, activity
