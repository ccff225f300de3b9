"""Cell embeddings: hidden states pooled over a cell's genes or taken at its ``<eos>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from ._tokens import non_gene_tokens

if TYPE_CHECKING:
    from ._decoder import MaxToki


def embed(
    model: MaxToki,
    input_ids: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    emb_layer: int = -1,
    mode: Literal["mean", "eos"] = "mean",
    gene_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Embed tokenised cells (see :meth:`MaxToki.embed`)."""
    n_states = model.config.num_hidden_layers + 1
    if (
        isinstance(emb_layer, bool)
        or not isinstance(emb_layer, int)
        or not -n_states <= emb_layer < n_states
    ):
        raise ValueError(
            f"emb_layer must be an int in [{-n_states}, {n_states - 1}], got {emb_layer!r}."
        )
    if mode not in ("mean", "eos"):
        raise ValueError(f"mode must be 'mean' or 'eos', got {mode!r}.")
    layer = emb_layer % n_states
    with torch.inference_mode():
        hidden, _, _ = model._trunk(input_ids, attention_mask=attention_mask, upto=layer)
        ids = input_ids.to(hidden.device)
        valid = torch.ones_like(ids, dtype=torch.bool)
        if attention_mask is not None:
            valid = attention_mask.to(hidden.device).bool()
        if mode == "eos":
            eos = model.config.eos_token_id
            is_eos = (ids == eos) & valid
            missing = (~is_eos.any(1)).nonzero()[:, 0].tolist()
            if missing:
                raise ValueError(
                    f"mode='eos' needs an <eos> token ({eos}) in every row; "
                    f"rows {missing[:10]} have none."
                )
            last = (is_eos * torch.arange(ids.shape[1], device=ids.device)).argmax(1)
            return hidden[torch.arange(ids.shape[0], device=ids.device), last].float()
        if gene_mask is None:
            gene_mask = ~non_gene_tokens(model.config, ids.device)[ids]
        elif tuple(gene_mask.shape) != tuple(ids.shape):
            raise ValueError(
                f"gene_mask must have the shape of input_ids {tuple(ids.shape)}, "
                f"got {tuple(gene_mask.shape)}."
            )
        weights = (gene_mask.to(ids.device).bool() & valid).float()
        empty = (weights.sum(1) == 0).nonzero()[:, 0].tolist()
        if empty:
            raise ValueError(
                f"mode='mean' needs at least one gene token per row; rows {empty[:10]} have none."
            )
        return (hidden.float() * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
