from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import h5ad_safe
from ._predict_time import predict_ages, reference_cells
from ._utils import (
    as_generator,
    batch_size_of,
    cell_tokens,
    check_model,
    cut_cell,
    finish,
    group_labels,
    max_genes_of,
    model_on_device,
    numeric_obs,
    positive_int,
    prepare,
    rng_param,
    sample_contexts,
    table_to_uns,
    token_matrix,
    vocab_columns,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab


def perturb(
    adata: AnnData,
    model: MaxToki,
    *,
    vocab: GeneVocab,
    genes: str | Sequence[str],
    kind: Literal["delete", "overexpress"] = "delete",
    context: AnnData | None = None,
    reference_key: str | None = "condition",
    reference: str | Sequence[str] = "control",
    time_key: str = "age_months",
    group_by: str | Sequence[str] | None = ("cell_type", "sex"),
    donor_key: str | None = "donor",
    n_cells: int | None = 100,
    n_contexts: int = 3,
    n_context_cells: int = 2,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    rng: int | np.random.Generator | None = 0,
    key_added: str = "maxtoki_perturb",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """In-silico perturbation of query cells and the resulting shift in predicted age.

    For each of up to ``n_cells`` query cells and each gene, the query's rank encoding is
    perturbed — ``'delete'`` removes the gene's token (only cells that have the gene among
    their top ``max_genes`` genes count), ``'overexpress'`` moves it to rank 1 (inserting it
    when absent) — and its age is predicted as in :func:`maxtoki.tl.predict_time` with the
    *same* contexts as the unperturbed cell. The shift is perturbed minus unperturbed
    predicted age, averaged over the contexts, then summarised per gene over cells.

    Parameters
    ----------
    adata
        Tokenized AnnData (or MuData) of the query cells.
    model
        A temporal (stage 2) :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    genes
        Gene names (``var_names``) to perturb, one at a time.
    kind
        ``'delete'`` or ``'overexpress'``.
    context, reference_key, reference, time_key, group_by, donor_key
        Reference cells for the contexts, as in :func:`maxtoki.tl.predict_time`.
    n_cells
        Query cells (a random subset of the cells with reference cells in their group; ``None``
        for all).
    n_contexts, n_context_cells
        Contexts per query cell and cells per context.
    max_genes
        Top-ranked genes kept per cell: pass the ``max_genes_per_cell`` the model was trained with
        (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else every gene up to the model's context.
    batch_size
        Prompts per forward pass.
    device
        ``'auto'``, ``'cpu'``, ``'cuda'``…
    rng
        Seed or generator (cells, contexts).
    key_added
        ``uns`` key of the table.
    mod
        Modality of MuData inputs.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``uns[key_added]['table']``
        One row per gene: ``gene``, ``kind``, ``mean_shift_months``, ``sem_months``,
        ``shift_years``, ``n_cells`` (cells perturbed), ``pval`` (two-sided Wilcoxon
        signed-rank test of the per-cell shifts against 0; ``nan`` below 5 cells).
        :func:`maxtoki.get.perturb` returns it as a DataFrame.
    ``uns[key_added]['params']``
        The parameters used.
    """
    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info(f"in-silico perturbation ({kind}) with MaxToki")
    check_model(model, vocab, need_time=True, what="`mt.tl.perturb`")
    if kind not in ("delete", "overexpress"):
        raise ValueError(f"kind must be 'delete' or 'overexpress', got {kind!r}")
    if isinstance(genes, str):
        genes = [genes]
    elif isinstance(genes, (list, tuple, np.ndarray, pd.Index, pd.Series)):
        genes = [str(g) for g in genes]
    else:
        raise TypeError(
            "genes must be a gene name or a list of names from var_names, got "
            f"{type(genes).__name__}"
        )
    if not genes:
        raise ValueError("pass at least one gene in `genes`")
    n_cells = positive_int("n_cells", n_cells, optional=True)
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise ValueError(
            f"genes {missing[:5]} are not in var_names; pass gene names from var_names (e.g. "
            f"{list(adata.var_names[:3])})"
        )
    ambiguous = sorted(set(genes) & set(adata.var_names[adata.var_names.duplicated()]))
    if ambiguous:
        raise ValueError(
            f"var_names are not unique: {ambiguous[:5]} name several genes; run "
            "`adata.var_names_make_unique()` first"
        )
    cols = vocab_columns(adata, vocab)
    token_of = pd.Series(cols.token_ids, index=adata.var_names[cols.var_rows])
    outside = [g for g in genes if g not in token_of.index]
    if outside:
        raise ValueError(
            f"genes {outside[:5]} are not in the model's vocabulary; they cannot be perturbed"
        )
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)

    tokens = token_matrix(adata, vocab)
    ref, ref_rows, r_tokens = reference_cells(
        adata, tokens, context, reference_key, reference, time_key, vocab, mod
    )
    r_times = numeric_obs(ref, time_key, "reference", "pass `time_key=` naming ages in months")
    ref_rows = ref_rows[np.isfinite(r_times[ref_rows])]
    q_groups = group_labels(adata.obs, group_by, "query")
    r_groups = group_labels(ref.obs, group_by, "context")[ref_rows]
    gen = as_generator(rng)
    candidates = np.flatnonzero(np.isin(q_groups, np.unique(r_groups)))
    if len(candidates) == 0:
        raise ValueError(
            f"no query cell has reference cells of its group (group_by={group_by!r}); pass a "
            "`context` with cells of these groups and known ages, or another `group_by`"
        )
    q = candidates
    if n_cells is not None and len(q) > n_cells:
        q = np.sort(gen.choice(q, n_cells, replace=False))
    use_donor = donor_key is not None and donor_key in adata.obs and donor_key in ref.obs
    q_self = np.full(len(q), -1)
    if ref is adata:
        pos = np.full(adata.n_obs, -1)
        pos[ref_rows] = np.arange(len(ref_rows))
        q_self = pos[q]
    contexts = sample_contexts(
        q_groups[q],
        adata.obs[donor_key].astype(str).to_numpy()[q] if use_donor else None,
        q_self,
        r_groups,
        ref.obs[donor_key].astype(str).to_numpy()[ref_rows] if use_donor else None,
        r_times[ref_rows],
        n_contexts=int(n_contexts), n_cells=int(n_context_cells), gen=gen, group_by=group_by,
    )  # fmt: skip

    originals = [cut_cell(c, max_genes) for c in cell_tokens(tokens[q])]
    variants, owner, gene_of = [], [], []
    for g in genes:
        t = int(token_of[g])
        for i, cell in enumerate(originals):
            new = _perturb_cell(cell, t, kind, max_genes)
            if new is not None:
                variants.append(new)
                owner.append(i)
                gene_of.append(g)
    owner = np.asarray(owner, dtype=np.int64)
    gene_of = np.asarray(gene_of, dtype=object)
    dev = model_on_device(model, device)
    all_q = originals + variants
    all_ctx = np.concatenate([contexts, contexts[owner]]) if len(owner) else contexts
    ages, _ = predict_ages(
        model, vocab, ref_cells=cell_tokens(r_tokens[ref_rows]), ref_times=r_times[ref_rows],
        query_cells=all_q, contexts=all_ctx, max_genes=max_genes, batch_size=size, device=dev,
        desc=f"perturb ({kind})",
    )  # fmt: skip
    base = ages[: len(originals)].mean(axis=1)
    shift = ages[len(originals) :].mean(axis=1) - base[owner] if len(owner) else np.zeros(0)
    table = pd.DataFrame([_summary(g, kind, shift[gene_of == g]) for g in genes])

    adata.uns[key_added] = {
        "table": table_to_uns(table),
        "params": h5ad_safe(
            {
                "genes": genes,
                "kind": kind,
                "context": "query object" if context is None else "separate AnnData",
                "reference_key": reference_key if context is None else None,
                "reference": reference if context is None else None,
                "time_key": time_key,
                "group_by": group_by,
                "donor_key": donor_key if use_donor else None,
                "n_query_cells": len(q),
                "n_contexts": int(n_contexts),
                "n_context_cells": int(n_context_cells),
                "max_genes": max_genes,
                "device": dev,
                "rng": rng_param(rng),
                "unit": "months",
            }
        ),
    }
    logg.info(f"    added uns[{key_added!r}] ({len(genes)} genes, {len(q)} cells)", time=start)
    return finish(data, mdata, mod, [], copy)


def _perturb_cell(
    cell: np.ndarray, token: int, kind: str, max_genes: int | None
) -> np.ndarray | None:
    genes = cell[1:-1]
    where = np.flatnonzero(genes == token)
    if kind == "delete":
        if len(where) == 0:
            return None
        genes = np.delete(genes, where)
    else:
        genes = np.concatenate([[token], np.delete(genes, where)])
        if max_genes is not None:
            genes = genes[:max_genes]
    return np.concatenate([cell[:1], genes, cell[-1:]]).astype(np.int64)


def _summary(gene: str, kind: str, shifts: np.ndarray) -> dict:
    from scipy.stats import wilcoxon

    n = len(shifts)
    mean = float(shifts.mean()) if n else np.nan
    sem = float(shifts.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    pval = np.nan
    if n >= 5 and np.any(shifts != 0):
        pval = float(wilcoxon(shifts).pvalue)
    return {
        "gene": gene,
        "kind": kind,
        "mean_shift_months": mean,
        "sem_months": sem,
        "shift_years": mean / 12.0 if n else np.nan,
        "n_cells": n,
        "pval": pval,
    }
