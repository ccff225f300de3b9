"""Start a new time head in scale before stage 2 trains it."""

from __future__ import annotations

import torch

from .. import logging as logg

#: Logit margin (nats) under the top non-time logit at the mean ``<eoq>`` hidden state that the
#: time tokens no answer can reach start with.
UNREACHABLE_MARGIN = 20.0


def start_time_readout(model, dataset, collator, *, n_examples: int = 64) -> bool:
    """Push down the time tokens no answer can reach when they hold the read-out (in place).

    The read-out is ``time_scale × E[v]``: with the official ``time_scale = 200`` only the
    answer tokens ``|v| ≤ 7.5`` (±1,500 months) are reachable, and the other ~2,985 output rows
    of a stage-1 model's new time tokens, smooth at either end of the month axis, hold nearly
    all the time mass at ``<eoq>``. The first predictions then lie 10,000–50,000 months off and
    stage 2 spends its first ~150 steps on huge, clipped gradients that also disturb the trunk.
    When the unreachable tokens hold more than half the time mass over the first
    ``n_examples`` TimeBetweenCells prompts, their ``lm_head`` rows are moved along the mean
    ``<eoq>`` hidden state ``μ`` until their logit at ``μ`` is :data:`UNREACHABLE_MARGIN`
    below the top non-time logit; the reachable rows and every other weight are left alone. A
    trained time head (most mass on reachable tokens) is not touched. The trainer calls it
    before a fresh stage-2 run when ``TrainConfig.time_readout_start`` is set.

    Parameters
    ----------
    model
        A :class:`~maxtoki.models.MaxToki` with time tokens and untied ``lm_head``.
    dataset
        Stage-2 training examples (:class:`~maxtoki.train.PromptDataset`); the same first ones
        on every rank, so distributed ranks change the weights identically.
    collator
        The :class:`~maxtoki.models.Collator` of the training.
    n_examples
        Examples scanned for TimeBetweenCells prompts.

    Returns
    -------
    Whether the rows were moved.
    """
    config = model.config
    if not config.has_time_tokens or config.tie_word_embeddings:
        return False
    values = torch.arange(config.n_time_tokens) + config.time_min_months
    top_month = config.time_min_months + config.n_time_tokens - 1
    reach = max(abs(config.time_min_months), abs(top_month))
    unreachable = (values * config.time_scale).abs() > reach
    if not unreachable.any():
        return False
    hidden = _eoq_hidden(model, dataset, collator, n_examples)
    if hidden is None:
        return False
    weight = model.lm_head.weight
    rows = torch.arange(config.n_time_tokens, device=weight.device) + config.time_token_start_id
    start = config.time_token_start_id
    with torch.no_grad():
        time_logits = (hidden @ weight[start : start + config.n_time_tokens].float().T).softmax(-1)
        mass = float(time_logits[:, unreachable.to(weight.device)].sum(-1).mean())
        if mass <= 0.5:
            return False
        mu = hidden.mean(0)
        others = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
        others[rows] = False
        target = (weight[others].float() @ mu).max() - UNREACHABLE_MARGIN
        moved = rows[unreachable.to(weight.device)]
        shift = (target - weight[moved].float() @ mu) / mu.dot(mu)
        weight[moved] += (shift[:, None] * mu[None]).to(weight.dtype)
    logg.info(
        f"the new time head starts in scale: {len(moved):,} time tokens no answer can reach "
        f"held {mass:.0%} of its time mass at <eoq>; their output rows now start "
        f"{UNREACHABLE_MARGIN:g} nats under the others"
    )
    return True


def _eoq_hidden(model, dataset, collator, n_examples: int) -> torch.Tensor | None:
    """Final hidden states (float32) at ``<eoq>`` of the first TimeBetweenCells examples."""
    examples = [dataset[i] for i in range(min(n_examples, len(dataset)))]
    if not examples:
        return None
    batch = collator(examples)
    rows = torch.nonzero(~torch.isnan(batch["time_target"])).flatten()
    if len(rows) == 0:
        return None
    captured = {}
    hook = model.model.norm.register_forward_hook(lambda m, i, out: captured.update(h=out))
    device = model.lm_head.weight.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(
                batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                position_ids=batch["position_ids"].to(device),
                seq_ids=None if "seq_ids" not in batch else batch["seq_ids"].to(device),
                logits_positions=torch.zeros(1, dtype=torch.long, device=device),
            )
    finally:
        hook.remove()
        model.train(was_training)
    where = batch["eoq_index"][rows].to(device)
    return captured["h"][where[:, 0], where[:, 1]].float()
