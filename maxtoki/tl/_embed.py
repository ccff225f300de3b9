from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import logging as logg
from .._docs import inject_docs
from .._keys import TOKENS_KEY, check_key, h5ad_safe
from .._validate import max_genes_of, model_vocab
from ._utils import finish, prepare, query_cells

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki


@inject_docs
def embed(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    emb_layer: Literal["last", "penultimate", "embeddings"] | int = "last",
    emb_mode: Literal["cell", "eos"] = "cell",
    max_genes: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    tokens_key: str = TOKENS_KEY,
    key_added: str = "maxtoki",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Embed every cell with a MaxToki model (one ``<bos> genes… <eos>`` sequence per cell).

    Parameters
    ----------
    {adata_tokens}
    {model}
    {vocab}
    emb_layer
        Hidden state to read, by name: ``'last'`` (default) the final-normed output of the last
        layer, ``'penultimate'`` the output of the second-to-last layer (what Geneformer's
        default ``emb_layer=-1`` reads), ``'embeddings'`` the token embeddings; or an index from
        0 (the token embeddings) to ``num_hidden_layers`` (``'last'``). Negative indices are
        refused: ``-1`` is the last layer in transformers and the second-to-last in Geneformer.
    emb_mode
        ``'cell'``: mean over the cell's gene tokens (Geneformer's cell embedding); ``'eos'``:
        the hidden state at ``<eos>``.
    {max_genes}
    {batch_size}
    {device}
    {tokens_key}
    key_added
        The embedding goes to ``obsm[f'X_{key_added}']`` and its record to ``uns[key_added]``
        (scanpy's rule for embeddings; default ``'maxtoki'``).
    {mod}
    {copy}

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes

    ``obsm[f'X_{key_added}']``
        ``(n_obs, hidden_size)`` float32 embedding; ``sc.pp.neighbors(adata, use_rep='X_maxtoki')``
        and ``sc.pl.embedding(adata, basis='maxtoki')`` use it.
    ``uns[key_added]['params']``
        The parameters used.
    """
    from ..models import BatchRunner

    data, adata, mdata = prepare(adata, mod, copy)
    start = logg.info("embedding cells with MaxToki")
    vocab = model_vocab(model, vocab, what="mt.tl.embed")
    check_key("key_added", key_added)
    if emb_mode not in ("cell", "eos"):
        raise ValueError(f"emb_mode must be 'cell' or 'eos', got {emb_mode!r}")
    layer = _layer_index(emb_layer, model.config.num_hidden_layers)
    cap = int(model.config.max_position_embeddings) - 2
    max_genes = max_genes_of(model, max_genes)
    max_genes = cap if max_genes is None else min(int(max_genes), cap)
    cells = query_cells(adata, vocab, tokens_key, max_genes)
    empty = [i for i, c in enumerate(cells) if len(c) <= 2]
    if empty and emb_mode == "cell":
        raise ValueError(
            f"{len(empty)} cells have no vocabulary gene (e.g. {adata.obs_names[empty[0]]!r}); "
            "remove them (see the `_empty` obs column of `mt.pp.tokenize`) or use emb_mode='eos'"
        )
    runner = BatchRunner(model, batch_size=batch_size, device=device)
    mode = "mean" if emb_mode == "cell" else "eos"
    out = runner.embeddings(cells, emb_layer=layer, mode=mode)
    obsm_key = f"X_{key_added}"
    adata.obsm[obsm_key] = out
    adata.uns[key_added] = {
        "params": h5ad_safe(
            {
                "emb_layer": emb_layer if isinstance(emb_layer, str) else int(emb_layer),
                "hidden_state": layer,
                "emb_mode": emb_mode,
                "max_genes": max_genes,
                "device": str(runner.device),
                "dtype": runner.dtype_name,
                "tokens_key": tokens_key,
                "vocab_hash": vocab.hash,
                "hidden_size": int(model.config.hidden_size),
            }
        )
    }
    logg.info(
        f"    added obsm[{obsm_key!r}] ({out.shape[1]} dims) and uns[{key_added!r}]", time=start
    )
    return finish(data, mdata, mod, [], copy)


def _layer_index(emb_layer, n_layers: int) -> int:
    """The index into the ``n_layers + 1`` hidden states of a named or non-negative layer."""
    named = {"embeddings": 0, "penultimate": n_layers - 1, "last": n_layers}
    if isinstance(emb_layer, str):
        if emb_layer not in named:
            raise ValueError(
                f"emb_layer must be 'last', 'penultimate', 'embeddings' or an index in "
                f"[0, {n_layers}], got {emb_layer!r}"
            )
        return named[emb_layer]
    if isinstance(emb_layer, bool) or not isinstance(emb_layer, (int, np.integer)):
        raise ValueError(f"emb_layer must be a layer name or an index, got {emb_layer!r}")
    if emb_layer < 0:
        raise ValueError(
            f"emb_layer={emb_layer}: negative indices mean different layers in transformers (-1: "
            "the last) and Geneformer (-1: the second-to-last); name the layer ('last', "
            f"'penultimate') or pass its index in [0, {n_layers}]"
        )
    if emb_layer > n_layers:
        raise ValueError(f"emb_layer must be an index in [0, {n_layers}], got {emb_layer}")
    return int(emb_layer)
