"""TimeBetweenCells regression, its loss, and growing the vocabulary to the temporal one."""

import numpy as np
import pytest
import torch

from maxtoki.models import (
    MaxToki,
    MaxTokiConfig,
    init_time_token_embeddings,
    predict_timelapse,
    timelapse_loss,
)

CONFIG = MaxTokiConfig(
    vocab_size=80,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    time_token_start_id=40,
    n_time_tokens=20,
    time_min_months=-10,
    boq_token_id=60,
    eoq_token_id=61,
)


def _numpy_reference(logits, config):
    logits = logits.astype(np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    start, n = config.time_token_start_id, config.n_time_tokens
    p_time = p[:, start : start + n]
    mass = p_time.sum(-1)
    months = np.arange(n) + config.time_min_months
    expected = (p_time / mass[:, None] * months).sum(-1)
    argmax = months[p_time.argmax(-1)]
    return expected, argmax, 1 - mass


def test_predict_timelapse_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 80)) * 3
    logits[:, 40:60] += 2.0
    expected, argmax, non_time = predict_timelapse(
        torch.tensor(logits, dtype=torch.float32), CONFIG
    )
    ref_expected, ref_argmax, ref_non_time = _numpy_reference(logits, CONFIG)
    np.testing.assert_allclose(expected.numpy(), ref_expected, atol=1e-4)
    np.testing.assert_array_equal(argmax.numpy(), ref_argmax)
    np.testing.assert_allclose(non_time.numpy(), ref_non_time, atol=1e-6)


def test_timelapse_loss_matches_numpy_and_backprops():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(4, 80)), dtype=torch.float32, requires_grad=True)
    target = torch.tensor([-3.0, 0.0, 5.0, 9.0])
    loss = timelapse_loss(logits, target, CONFIG)
    expected, _, non_time = _numpy_reference(logits.detach().numpy(), CONFIG)
    reference = np.mean(((expected - target.numpy()) / 200.0) ** 2) + 10.0 * non_time.mean()
    np.testing.assert_allclose(loss.item(), reference, rtol=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_peaked_logits_give_the_month():
    logits = torch.full((1, 80), -30.0)
    logits[0, CONFIG.time_token_id(7)] = 30.0
    expected, argmax, non_time = predict_timelapse(logits, CONFIG)
    assert abs(expected.item() - 7) < 1e-3 and argmax.item() == 7 and non_time.item() < 1e-6
    assert timelapse_loss(logits, torch.tensor([7.0]), CONFIG).item() < 1e-6


def test_errors_without_time_tokens_or_wrong_shapes():
    stage1 = MaxTokiConfig(
        vocab_size=80,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    with pytest.raises(ValueError, match="no time tokens"):
        predict_timelapse(torch.zeros(2, 80), stage1)
    with pytest.raises(ValueError, match="vocab_size=80"):
        predict_timelapse(torch.zeros(2, 79), CONFIG)
    with pytest.raises(ValueError, match="target_months"):
        timelapse_loss(torch.zeros(2, 80), torch.zeros(3), CONFIG)


def test_resize_to_temporal_vocabulary():
    config = MaxTokiConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        n_time_tokens=20,
        time_min_months=-10,
    )
    torch.manual_seed(0)
    model = MaxToki(config)
    old_embed = model.model.embed_tokens.weight.detach().clone()
    old_head = model.lm_head.weight.detach().clone()
    model.resize_token_embeddings(62, random_state=0)
    c = model.config
    assert (c.vocab_size, c.time_token_start_id, c.boq_token_id, c.eoq_token_id) == (62, 40, 60, 61)
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    assert embed.shape == (62, 16) and head.shape == (62, 16)
    torch.testing.assert_close(embed[:40], old_embed)
    torch.testing.assert_close(head[:40], old_head)
    # <boq>/<eoq>: mean of old rows plus small noise
    torch.testing.assert_close(
        embed[60:].detach(), old_embed.mean(0).expand(2, -1), atol=0.002, rtol=0
    )
    # time tokens: smooth in month value, neighbours closer than distant months
    times = embed[40:60].detach()
    near = (times[1:] - times[:-1]).norm(dim=1).mean()
    far = (times[:10] - times[10:]).norm(dim=1).mean()
    assert near < far / 3
    out = model(torch.tensor([[2, 5, 3, 45, 60, 2, 6, 3, 61]]))
    assert out.logits.shape == (1, 9, 62)
    with pytest.raises(ValueError, match="new_vocab_size"):
        model.resize_token_embeddings(50)


def test_resize_mean_init_and_init_helper():
    model = MaxToki(
        MaxTokiConfig(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            n_time_tokens=20,
        )
    )
    model.resize_token_embeddings(62, time_token_init="mean", random_state=0)
    times = model.model.embed_tokens.weight[40:60].detach()
    assert (times - times.mean(0)).abs().max() < 0.01
    init_time_token_embeddings(model, n_anchors=4, random_state=1)
    head_times = model.lm_head.weight[40:60].detach()
    assert (head_times[1:] - head_times[:-1]).norm(dim=1).max() < (
        head_times[0] - head_times[-1]
    ).norm()
