"""TimeBetweenCells regression, its loss, and growing the vocabulary to the temporal one."""

import dataclasses

import numpy as np
import pytest
import torch
import train_data as data

from maxtoki.models import (
    MaxToki,
    MaxTokiConfig,
    init_time_token_embeddings,
    predict_timelapse,
    timelapse_loss,
)

CONFIG = data.TIME_CONFIG


def _numpy_reference(logits, config):
    logits = logits.astype(np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    start, n = config.time_token_start_id, config.n_time_tokens
    p_time = p[:, start : start + n]
    mass = p_time.sum(-1)
    months = np.arange(n) + config.time_min_months
    expected = (p_time / mass[:, None] * months).sum(-1) * config.time_scale
    argmax = months[p_time.argmax(-1)] * config.time_scale
    return expected, argmax, 1 - mass


SCALES = pytest.mark.parametrize("time_scale", [200.0, 1.0], ids=["official", "maxtoki-0.1"])


@SCALES
def test_predict_timelapse_matches_numpy(time_scale):
    config = dataclasses.replace(CONFIG, time_scale=time_scale)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 80)) * 3
    logits[:, 40:60] += 2.0
    expected, argmax, non_time = predict_timelapse(
        torch.tensor(logits, dtype=torch.float32), config
    )
    ref_expected, ref_argmax, ref_non_time = _numpy_reference(logits, config)
    np.testing.assert_allclose(expected.numpy(), ref_expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(argmax.numpy(), ref_argmax)
    np.testing.assert_allclose(non_time.numpy(), ref_non_time, atol=1e-6)


@SCALES
def test_timelapse_loss_matches_numpy_and_backprops(time_scale):
    config = dataclasses.replace(CONFIG, time_scale=time_scale)
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(4, 80)), dtype=torch.float32, requires_grad=True)
    target = torch.tensor([-3.0, 0.0, 5.0, 9.0]) * time_scale
    loss = timelapse_loss(logits, target, config)
    expected, _, non_time = _numpy_reference(logits.detach().numpy(), config)
    reference = np.mean(((expected - target.numpy()) / 200.0) ** 2) + 10.0 * non_time.mean()
    np.testing.assert_allclose(loss.item(), reference, rtol=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@SCALES
def test_the_loss_is_zero_where_the_read_out_is_the_target(time_scale):
    config = dataclasses.replace(CONFIG, time_scale=time_scale)
    logits = torch.full((1, 80), -30.0)
    logits[0, config.time_token_id(7)] = 30.0
    expected, argmax, non_time = predict_timelapse(logits, config)
    months = 7 * time_scale
    assert abs(expected.item() - months) < 1e-3 * time_scale and argmax.item() == months
    assert non_time.item() < 1e-6
    assert timelapse_loss(logits, torch.tensor([months]), config).item() < 1e-6
    assert timelapse_loss(logits, torch.tensor([months + 200.0]), config).item() > 0.99


def test_the_official_read_out_is_200_times_the_expected_token_value():
    """Probability 0.4 / 0.6 on the tokens "0" / "1": E[v] = 0.6, i.e. 120 months officially."""
    logits = torch.full((1, 80), -1e4)
    logits[0, CONFIG.time_token_id(0)] = np.log(0.4)
    logits[0, CONFIG.time_token_id(1)] = np.log(0.6)
    assert CONFIG.time_scale == 200.0  # the official convention is the default
    assert predict_timelapse(logits, CONFIG)[0].item() == pytest.approx(120.0, abs=1e-3)
    old = dataclasses.replace(CONFIG, time_scale=1.0)
    assert predict_timelapse(logits, old)[0].item() == pytest.approx(0.6, abs=1e-5)


def test_a_config_without_time_scale_says_which_convention_it_gets(capsys):
    values = CONFIG.to_dict()
    del values["time_scale"]  # maxtoki 0.1 wrote every field but this one
    assert MaxTokiConfig.from_dict(values).time_scale == 1.0
    assert "no time_scale: timelapses are read as 1 × the expected" in capsys.readouterr().err
    official = {k: v for k, v in values.items() if k not in ("label_scale", "non_time_penalty")}
    assert MaxTokiConfig.from_dict(official).time_scale == 200.0
    assert "(the official convention" in capsys.readouterr().err
    released = {"vocab_size": 23_277, "hidden_size": 16, "intermediate_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 2}  # fmt: skip
    config = MaxTokiConfig.from_dict(released)
    assert (config.time_token_start_id, config.boq_token_id, config.time_scale) == (
        20_275,
        23_275,
        200.0,
    )


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


def _small_time_model(time_scale):
    return MaxToki(
        MaxTokiConfig(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            n_time_tokens=20,
            time_min_months=-10,
            time_scale=time_scale,
        )
    )


def _smooth(rows):
    """Neighbouring rows closer than the two ends: a curve, not random rows."""
    return (rows[1:] - rows[:-1]).norm(dim=1).max() < (rows[0] - rows[-1]).norm()


def test_resize_mean_init_and_init_helper():
    model = _small_time_model(time_scale=1.0)
    model.resize_token_embeddings(62, time_token_init="mean", random_state=0)
    times = model.model.embed_tokens.weight[40:60].detach()
    assert (times - times.mean(0)).abs().max() < 0.01
    init_time_token_embeddings(model, n_anchors=4, random_state=1)
    assert _smooth(model.lm_head.weight[40:60].detach())
    assert _smooth(model.model.embed_tokens.weight[40:60].detach())


def test_init_places_answer_rows_at_scaled_months():
    """Inputs stand for v months, answers for time_scale × v: the lm_head curve is stretched."""
    model = _small_time_model(time_scale=200.0)
    model.resize_token_embeddings(62, random_state=0)
    init_time_token_embeddings(model, n_anchors=4, random_state=1)
    head = model.lm_head.weight[40:60].detach()  # values -10 … 9
    assert _smooth(model.model.embed_tokens.weight[40:60].detach())
    # every non-zero answer is ≥ 200 months away and clips to an end of the −10…9 range
    torch.testing.assert_close(head[:10], head[:1].expand(10, -1))
    torch.testing.assert_close(head[11:], head[-1:].expand(9, -1))
    assert (head[10] - head[0]).norm() > 0 and (head[10] - head[-1]).norm() > 0
