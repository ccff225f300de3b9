"""NextCell: sample the genes of a cell, one token at a time, with a preallocated KV cache."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .. import logging as logg

if TYPE_CHECKING:
    from ._decoder import MaxToki


def generate(
    model: MaxToki,
    prompts: list[torch.Tensor] | torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    random_state: torch.Generator | int | None = None,
    use_cache: bool = True,
) -> list[torch.Tensor]:
    """Generate one cell per prompt (see :meth:`MaxToki.generate`)."""
    config = model.config
    prompts = _check_prompts(prompts, config)
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    device = model.device
    eos, bos, eoq = config.eos_token_id, config.bos_token_id, config.eoq_token_id
    if bos is not None and eoq is not None:
        prompts = [torch.cat([p, p.new_tensor([bos])]) if int(p[-1]) == eoq else p for p in prompts]
    batch, lengths = len(prompts), [len(p) for p in prompts]
    prompt_len = max(lengths)
    total = prompt_len + max_new_tokens
    if total > config.max_position_embeddings:
        logg.warning(
            f"generating up to position {total} beyond max_position_embeddings="
            f"{config.max_position_embeddings}: the model was not trained that far."
        )
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.full((batch, total), pad, dtype=torch.long, device=device)
    valid = torch.zeros(batch, total, dtype=torch.bool, device=device)
    non_gene = config.non_gene_mask(device)
    # banned[row, token]: tokens a row may not sample (non-genes, genes already in its cell);
    # <eos> is allowed once the cell has a gene. Updated in place, one scatter per step.
    banned = non_gene.expand(batch, -1).clone()
    n_genes = torch.zeros(batch, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        p = p.to(device)
        ids[row, prompt_len - len(p) : prompt_len] = p
        valid[row, prompt_len - len(p) : prompt_len] = True
        open_genes = _open_cell_genes(p, bos, eos, non_gene)
        banned[row, open_genes] = True
        n_genes[row] = len(open_genes.unique())
    n_gene_tokens = int((~non_gene).sum())
    generator = _generator(random_state, device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    n_out = torch.zeros(batch, dtype=torch.long, device=device)
    fill = eos if eos is not None else pad

    padded = min(lengths) < prompt_len  # known on the host: no mask (and no sync) without padding
    with torch.inference_mode():
        cache = model.new_kv_cache(batch, total) if use_cache else None
        last = torch.tensor([prompt_len - 1], device=device)
        logits = model(
            ids[:, :prompt_len],
            attention_mask=valid[:, :prompt_len] if padded else None,
            kv_cache=cache,
            logits_positions=last,
        ).logits[:, -1]
        for step in range(max_new_tokens):
            exhausted = n_genes >= n_gene_tokens
            if eos is None:
                done |= exhausted  # nothing left to sample: the cell is complete
            else:
                banned[:, eos] = n_genes == 0
                done |= exhausted & (n_genes == 0)
            token = _sample(logits, banned, done, temperature, top_k, top_p, greedy, generator)
            token = torch.where(done, fill, token)
            cur = prompt_len + step
            ids[:, cur] = token
            valid[:, cur] = True  # finished rows run on; their tokens are dropped
            n_out += ~done
            is_gene = ~done if eos is None else ~done & (token != eos)
            banned.scatter_(1, token[:, None], True)  # <eos> and the fill are reset above
            n_genes += is_gene
            if eos is not None:
                done |= token == eos
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            if use_cache:
                logits = model(token[:, None], kv_cache=cache).logits[:, -1]
            else:
                logits = model(
                    ids[:, : cur + 1],
                    attention_mask=valid[:, : cur + 1] if padded else None,
                    logits_positions=torch.tensor([cur], device=device),
                ).logits[:, -1]
    generated = ids[:, prompt_len:].cpu()
    return [generated[row, : int(n)].clone() for row, n in enumerate(n_out.cpu())]


def _sample(logits, banned, done, temperature, top_k, top_p, greedy, generator) -> torch.Tensor:
    logits = logits.float().masked_fill(banned, float("-inf"))
    if greedy:
        return logits.argmax(-1)
    logits = logits.masked_fill(done[:, None], 0.0)  # finished rows (perhaps all banned): no NaN
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop_sorted = probs.cumsum(-1) - probs > top_p  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(
            probs.device
        )
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _open_cell_genes(prompt: torch.Tensor, bos, eos, non_gene: torch.Tensor) -> torch.Tensor:
    """Genes after the last ``<bos>`` of a prompt whose last cell has no ``<eos>`` yet."""
    if bos is None:
        return prompt[:0]
    starts = (prompt == bos).nonzero()
    if len(starts) == 0:
        return prompt[:0]
    tail = prompt[int(starts[-1]) + 1 :]
    if eos is not None and bool((tail == eos).any()):
        return prompt[:0]
    return tail[~non_gene[tail]]


def _check_prompts(prompts, config) -> list[torch.Tensor]:
    if isinstance(prompts, torch.Tensor):
        if prompts.ndim != 1:
            raise ValueError(
                "pass prompts as a list of 1-D tensors (one per cell, any lengths), got a tensor "
                f"of shape {tuple(prompts.shape)}."
            )
        prompts = [prompts]
    if not isinstance(prompts, list | tuple) or len(prompts) == 0:
        raise TypeError("prompts must be a non-empty list of 1-D integer tensors.")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, torch.Tensor) or p.ndim != 1 or p.numel() == 0:
            raise ValueError(f"prompt {i} must be a non-empty 1-D tensor of token ids.")
        if p.dtype.is_floating_point or p.dtype == torch.bool:
            raise TypeError(f"prompt {i} must hold integer token ids, got {p.dtype}.")
        if int(p.min()) < 0 or int(p.max()) >= config.vocab_size:
            raise ValueError(f"prompt {i} has token ids outside [0, {config.vocab_size}).")
        out.append(p.long())
    return out


def _check_sampling(max_new_tokens, temperature, top_k, top_p) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}.")
    if (
        not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(
            f"temperature must be > 0 (use greedy=True for argmax), got {temperature!r}."
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}.")
    if top_p is not None and not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}.")


def _generator(random_state, device: torch.device) -> torch.Generator | None:
    if random_state is None or isinstance(random_state, torch.Generator):
        return random_state
    if isinstance(random_state, int) and not isinstance(random_state, bool):
        return torch.Generator(device=device).manual_seed(random_state)
    raise TypeError(
        "random_state must be a torch.Generator, an int seed or None, got "
        f"{type(random_state).__name__}."
    )
