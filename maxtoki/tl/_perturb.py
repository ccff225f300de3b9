from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import group_labels, positive_int
from .._docs import inject_docs
from .._keys import TOKENS_KEY, check_key, h5ad_safe, random_state_param, slot, table_to_uns
from .._validate import max_genes_of, model_vocab
from ._contexts import draw_contexts, predict_ages, reference_set
from ._utils import as_generator, bh_adjust, finish, prepare, query_cells, vocab_columns

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki


@inject_docs
def perturb(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    genes: str | Sequence[str],
    kind: Literal["delete", "overexpress"] = "delete",
    context: AnnData | None = None,
    reference_key: str | None = "condition",
    reference: str | Sequence[str] = "control",
    time_key: str = "age_months",
    groupby: str | Sequence[str] | None = ("cell_type", "sex"),
    donor_key: str | None = "donor",
    n_cells: int | None = 100,
    n_contexts: int = 3,
    n_context_cells: int = 2,
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """In-silico perturbation of cells and the resulting shift in predicted age.

    For each of up to ``n_cells`` cells and each gene, the cell's rank encoding is perturbed —
    ``'delete'`` removes the gene's token (only cells that have the gene among their top
    ``max_genes`` genes count), ``'overexpress'`` moves it to rank 1 (inserting it when absent)
    — and its age is predicted as in :func:`maxtoki.tl.predict_time` with the *same* contexts as
    the unperturbed cell. The shift is perturbed minus unperturbed predicted age, averaged over
    the contexts, then summarised per gene over cells.

    Parameters
    ----------
    {adata_tokens}
    {temporal_model}
    {vocab}
    genes
        Gene names (``var_names``) to perturb, one at a time.
    kind
        ``'delete'`` or ``'overexpress'``.
    {reference}
    {time_key}
    {groupby}
    {donor_key}
    n_cells
        Cells to perturb (a random subset of the cells with reference cells in their group;
        ``None`` for all).
    {n_contexts}
    {max_genes}
    {batch_size}
    {device}
    {random_state}
    {tokens_key}
    {key_added}
    {mod}
    {copy}

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``uns[f'{key_added}_perturb']['table']``
        One row per gene: ``gene``, ``kind``, ``mean_shift_months``, ``sem_months``,
        ``shift_years``, ``n_cells`` (cells perturbed), ``pval`` (two-sided Wilcoxon signed-rank
        test of the per-cell shifts against 0; ``nan`` below 5 cells) and ``pval_adj``
        (Benjamini–Hochberg over the genes). :func:`maxtoki.get.perturb` returns it as a
        DataFrame.
    ``uns[f'{key_added}_perturb']['params']``
        The parameters used.
    """
    from ..models import BatchRunner
    from ..pp import PromptEncoder

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info(f"in-silico perturbation ({kind}) with MaxToki")
    vocab = model_vocab(model, vocab, need_time=True, what="mt.tl.perturb")
    check_key("key_added", key_added)
    if kind not in ("delete", "overexpress"):
        raise ValueError(f"kind must be 'delete' or 'overexpress', got {kind!r}")
    genes = _gene_list(adata, genes)
    n_cells = positive_int("n_cells", n_cells, optional=True)
    n_contexts = positive_int("n_contexts", n_contexts)
    n_context_cells = positive_int("n_context_cells", n_context_cells)
    cols = vocab_columns(adata, vocab, tokens_key)
    token_of = pd.Series(cols.token_ids, index=adata.var_names[cols.var_rows])
    outside = [g for g in genes if g not in token_of.index]
    if outside:
        raise ValueError(
            f"genes {outside[:5]} are not in the model's vocabulary; they cannot be perturbed"
        )
    max_genes = max_genes_of(model, max_genes)
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    cells = query_cells(adata, vocab, tokens_key, max_genes)
    ref = reference_set(
        adata, context=context, reference_key=reference_key, reference=reference,
        time_key=time_key, groupby=groupby, donor_key=donor_key, vocab=vocab,
        tokens_key=tokens_key, mod=mod,
    )  # fmt: skip
    q_groups = group_labels(adata.obs, groupby, "query")
    gen = as_generator(random_state)
    q = np.flatnonzero(np.isin(q_groups, np.unique(ref.groups)))
    if len(q) == 0:
        raise ValueError(
            f"no cell has reference cells of its group (groupby={groupby!r}); pass a `context` "
            "with cells of these groups and known ages, or another `groupby`"
        )
    if n_cells is not None and len(q) > n_cells:
        q = np.sort(gen.choice(q, n_cells, replace=False))
    donors = None if ref.donors is None else adata.obs[donor_key].astype(str).to_numpy()[q]
    contexts = draw_contexts(
        ref,
        q_groups[q],
        donors,
        ref.position_of(adata, q),
        n_contexts=n_contexts,
        n_cells=n_context_cells,
        gen=gen,
        groupby=groupby,
    )
    originals = [cells[i] for i in q]
    variants, owner, gene_of = _variants(originals, genes, token_of, kind, max_genes)
    encoder = PromptEncoder(
        vocab, max_length=model.config.max_position_embeddings, max_genes=max_genes
    )
    all_ctx = np.concatenate([contexts, contexts[owner]]) if len(owner) else contexts
    ages, _ = predict_ages(
        runner, encoder, ref.cells, ref.times, originals + variants, all_ctx,
        desc=f"perturb ({kind})",
    )  # fmt: skip
    base = ages[: len(originals)].mean(axis=1)
    shift = ages[len(originals) :].mean(axis=1) - base[owner] if len(owner) else np.zeros(0)
    table = pd.DataFrame([_summary(g, kind, shift[gene_of == g]) for g in genes])
    table.insert(table.columns.get_loc("pval") + 1, "pval_adj", bh_adjust(table["pval"]))
    key = slot(key_added, "perturb")
    adata.uns[key] = {"table": table_to_uns(table), "params": _params(locals(), ref, runner)}
    logg.info(f"    added uns[{key!r}] ({len(genes)} genes, {len(q)} cells)", time=start)
    return finish(data, mdata, mod, [], copy)


def _variants(originals, genes, token_of, kind, max_genes):
    """Every perturbed cell, the original it came from and its gene."""
    variants, owner, gene_of = [], [], []
    for g in genes:
        for i, cell in enumerate(originals):
            new = _perturb_cell(cell, int(token_of[g]), kind, max_genes)
            if new is not None:
                variants.append(new)
                owner.append(i)
                gene_of.append(g)
    return variants, np.asarray(owner, dtype=np.int64), np.asarray(gene_of, dtype=object)


def _gene_list(adata: AnnData, genes: Any) -> list[str]:
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
    return genes


def _params(args: dict[str, Any], ref, runner) -> dict[str, Any]:
    own = args["context"] is None
    return h5ad_safe(
        {
            "genes": args["genes"],
            "kind": args["kind"],
            "context": "query object" if own else "separate AnnData",
            "reference_key": args["reference_key"] if own else None,
            "reference": args["reference"] if own else None,
            "time_key": args["time_key"],
            "groupby": args["groupby"],
            "donor_key": args["donor_key"] if ref.donors is not None else None,
            "n_query_cells": len(args["q"]),
            "n_contexts": args["n_contexts"],
            "n_context_cells": args["n_context_cells"],
            "max_genes": args["max_genes"],
            "device": str(runner.device),
            "dtype": runner.dtype_name,
            "random_state": random_state_param(args["random_state"]),
            "tokens_key": args["tokens_key"],
            "unit": "months",
        }
    )


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
