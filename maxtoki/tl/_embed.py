from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import logging as logg
from .._anndata import h5ad_safe
from ._utils import (
    batch_size_of,
    batches,
    cell_tokens,
    check_model,
    cut_cell,
    finish,
    max_genes_of,
    model_on_device,
    pad_cells,
    prepare,
    token_matrix,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import MaxToki
    from ..pp import GeneVocab


def embed(
    adata: AnnData,
    model: MaxToki,
    *,
    vocab: GeneVocab,
    emb_layer: int = -1,
    emb_mode: Literal["cell", "eos"] = "cell",
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    key_added: str = "X_maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Embed every cell with a MaxToki model (one ``<bos> genes… <eos>`` sequence per cell).

    Parameters
    ----------
    adata
        AnnData (or MuData) tokenized by :func:`maxtoki.pp.tokenize` with ``vocab``.
    model
        A :class:`~maxtoki.models.MaxToki`.
    vocab
        The model's :class:`~maxtoki.pp.GeneVocab`.
    emb_layer
        Hidden state to read: ``-1`` (default) the final-normed output, ``-2`` the output of the
        second-to-last layer, …, ``0`` the token embeddings.
    emb_mode
        ``'cell'``: mean over the cell's gene tokens (Geneformer's cell embedding); ``'eos'``:
        the hidden state at ``<eos>``.
    max_genes
        Top-ranked genes kept per cell: pass the ``max_genes_per_cell`` the model was trained with
        (:func:`maxtoki.tl.train` uses 64). ``None``: the value recorded in
        ``model.config.max_genes_per_cell`` if set, else every gene up to the model's context.
    batch_size
        Cells per forward pass (default ``mt.settings.batch_size``).
    device
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``…
    key_added
        ``obsm`` key of the embedding; the parameters go to ``uns[key_added.removeprefix('X_')]``.
    mod
        Modality of MuData inputs.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``obsm[key_added]``
        ``(n_obs, hidden_size)`` float32 embedding; ``sc.pp.neighbors(adata, use_rep=key_added)``
        and ``sc.pl.embedding(adata, basis='maxtoki')`` use it.
    ``uns['maxtoki']['params']``
        The parameters used (``uns[key_added.removeprefix('X_')]`` for another ``key_added``).
    """
    import torch

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info("embedding cells with MaxToki")
    check_model(model, vocab)
    if emb_mode not in ("cell", "eos"):
        raise ValueError(f"emb_mode must be 'cell' or 'eos', got {emb_mode!r}")
    n_states = model.config.num_hidden_layers + 1
    if (
        isinstance(emb_layer, bool)
        or not isinstance(emb_layer, (int, np.integer))
        or not -n_states <= emb_layer < n_states
    ):
        raise ValueError(
            f"emb_layer must be an int in [{-n_states}, {n_states - 1}], got {emb_layer!r}"
        )
    size = batch_size_of(batch_size)
    max_genes = max_genes_of(model, max_genes)
    cap = int(model.config.max_position_embeddings) - 2
    max_genes = cap if max_genes is None else min(int(max_genes), cap)
    cells = [cut_cell(c, max_genes) for c in cell_tokens(token_matrix(adata, vocab))]
    empty = [i for i, c in enumerate(cells) if len(c) <= 2]
    if empty and emb_mode == "cell":
        raise ValueError(
            f"{len(empty)} cells have no vocabulary gene (e.g. {adata.obs_names[empty[0]]!r}); "
            "remove them (see obs['maxtoki_empty'] from `mt.pp.tokenize`) or use emb_mode='eos'"
        )
    dev = model_on_device(model, device)
    out = np.zeros((adata.n_obs, model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(c) for c in cells], kind="stable")
    with torch.inference_mode():
        for sl in batches(len(order), size, "embed"):
            idx = order[sl]
            ids, mask = pad_cells([cells[i] for i in idx])
            emb = model.embed(
                ids.to(dev), attention_mask=mask.to(dev), emb_layer=int(emb_layer),
                mode="mean" if emb_mode == "cell" else "eos",
            )  # fmt: skip
            out[idx] = emb.float().cpu().numpy()
    adata.obsm[key_added] = out
    uns_key = key_added.removeprefix("X_")
    adata.uns[uns_key] = {
        "params": h5ad_safe(
            {
                "emb_layer": int(emb_layer),
                "emb_mode": emb_mode,
                "max_genes": max_genes,
                "device": dev,
                "vocab_hash": vocab.hash,
                "hidden_size": int(model.config.hidden_size),
            }
        )
    }
    logg.info(
        f"    added obsm[{key_added!r}] ({out.shape[1]} dims) and uns[{uns_key!r}]", time=start
    )
    return finish(data, mdata, mod, [], copy)
