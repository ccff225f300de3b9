"""Attention backends, masks, head-dim padding and the KV cache."""

import dataclasses
import itertools

import pytest
import torch

from maxtoki.models import MaxToki, MaxTokiConfig, _attention, _decoder
from maxtoki.models._attention import resolve_backend


def _model(seed=0, **overrides) -> MaxToki:
    values = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    values.update(overrides)
    torch.manual_seed(seed)
    return MaxToki(MaxTokiConfig(**values)).eval()


def _with_backend(model: MaxToki, backend: str) -> MaxToki:
    model.config = dataclasses.replace(model.config, attn_backend=backend)
    return model


def _ids(batch=3, steps=40, seed=0):
    return torch.randint(4, 64, (batch, steps), generator=torch.Generator().manual_seed(seed))


def test_sdpa_and_eager_agree():
    model, ids = _model(), _ids()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 25:] = False
    with torch.no_grad():
        sdpa = _with_backend(model, "sdpa")(ids, attention_mask=mask).logits
        eager = _with_backend(model, "eager")(ids, attention_mask=mask).logits
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


def test_output_attentions_are_probabilities():
    model, ids = _model(), _ids(steps=12)
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    assert len(out.attentions) == 2
    probs = out.attentions[0]
    assert probs.shape == (3, 4, 12, 12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, 12))
    assert probs.triu(1).abs().max() == 0  # causal


def test_eager_is_chunked_over_query_blocks(monkeypatch):
    model, ids = _model(), _ids(steps=30)
    with torch.no_grad():
        whole = _with_backend(model, "eager")(ids, output_attentions=True)
        monkeypatch.setattr(_attention, "_EAGER_BLOCK_ELEMENTS", 4 * 30 * 3 * 7)  # 7-query blocks
        chunked = model(ids, output_attentions=True)
    torch.testing.assert_close(whole.logits, chunked.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(whole.attentions[1], chunked.attentions[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("heads", "head_dim"), [(2, 10), (2, 154)])
def test_padded_head_dim_equals_eager(monkeypatch, heads, head_dim):
    # head dim 10 → 16 and 154 (the 217M model) → 160, softmax scale kept at 1/sqrt(head_dim)
    model = _model(num_attention_heads=heads, num_key_value_heads=1, head_dim=head_dim)
    ids = _ids(steps=24)
    with torch.no_grad():
        reference = _with_backend(model, "eager")(ids).logits
        monkeypatch.setattr(_attention, "_padded_head_dim", lambda d, device: -(-d // 8) * 8)
        for backend in ("sdpa", "eager"):
            padded = _with_backend(model, backend)(ids).logits
            torch.testing.assert_close(padded, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_packed_documents_equal_separate_runs(backend):
    model = _with_backend(_model(), backend)
    docs = [_ids(1, n, seed=n)[0] for n in (7, 12, 5)]
    packed = torch.cat(docs)[None]
    seq_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])[None]
    with torch.no_grad():
        logits = model(packed, seq_ids=seq_ids).logits[0]
        separate = torch.cat([model(d[None]).logits[0] for d in docs])
    torch.testing.assert_close(logits, separate, atol=1e-5, rtol=0)


def test_packed_documents_with_right_padding():
    model = _model()
    docs = [_ids(1, n, seed=n)[0] for n in (6, 9)]
    row = torch.cat([*docs, torch.zeros(5, dtype=torch.long)])[None]
    seq_ids = torch.tensor([[0] * 6 + [1] * 9 + [2] * 5])
    mask = torch.tensor([[True] * 15 + [False] * 5])
    with torch.no_grad():
        logits = model(row, seq_ids=seq_ids, attention_mask=mask).logits[0, :15]
        separate = torch.cat([model(d[None]).logits[0] for d in docs])
    torch.testing.assert_close(logits, separate, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_padding_does_not_change_real_logits(backend):
    model = _with_backend(
        _model(
            rope_scaling={
                "rope_type": "llama3",
                "factor": 4.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        ),
        backend,
    )
    ids = _ids(1, 20)
    padded = torch.cat([ids, torch.zeros(1, 8, dtype=torch.long)], 1)
    right = torch.cat([ids.new_ones(1, 20), ids.new_zeros(1, 8)], 1).bool()
    left_ids = torch.cat([torch.zeros(1, 8, dtype=torch.long), ids], 1)
    with torch.no_grad():
        alone = model(ids).logits
        r = model(padded, attention_mask=right).logits[:, :20]
        left = model(left_ids, attention_mask=right.flip(1)).logits[:, 8:]
    assert torch.isfinite(model(left_ids, attention_mask=right.flip(1)).logits).all()
    torch.testing.assert_close(r, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_kv_cache_prefill_then_steps_equals_full_forward(backend):
    model = _with_backend(_model(), backend)
    ids = _ids(2, 20)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :6] = False  # left padding in row 1
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = model.new_kv_cache(2, 20)
        parts = [model(ids[:, :12], attention_mask=mask[:, :12], kv_cache=cache).logits]
        parts.append(model(ids[:, 12:15], kv_cache=cache).logits)  # a chunk of 3
        parts += [model(ids[:, t : t + 1], kv_cache=cache).logits for t in range(15, 20)]
    torch.testing.assert_close(torch.cat(parts, 1)[mask], full[mask], atol=1e-5, rtol=0)
    assert cache.length == 20
    with pytest.raises(ValueError, match="full"):
        model(ids[:, :1], kv_cache=cache)


def test_logits_positions():
    model, ids = _model(), _ids()
    with torch.no_grad():
        full = model(ids).logits
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, 3] = mask[2, 7] = mask[2, 9] = True
        torch.testing.assert_close(model(ids, logits_positions=mask).logits, full[mask])
        torch.testing.assert_close(
            model(ids, logits_positions=torch.tensor([-1])).logits, full[:, -1:]
        )
        per_row = torch.tensor([[1, 2], [3, 4], [5, 39]])
        expected = torch.stack([full[b, per_row[b]] for b in range(3)])
        torch.testing.assert_close(model(ids, logits_positions=per_row).logits, expected)


def test_forward_input_errors():
    model = _model()
    with pytest.raises(ValueError, match="batch dimension"):
        model(torch.tensor([4, 5, 6]))
    with pytest.raises(TypeError, match="integers"):
        model(torch.tensor([[4.0, 5.0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(_ids(), attention_mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match="seq_ids"):
        model(_ids(), seq_ids=torch.zeros_like(_ids()), kv_cache=model.new_kv_cache(3, 64))


def test_backend_selection():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", device=cpu, dtype=torch.float32, head_dim=154) == "sdpa"
    assert resolve_backend("auto", device=cpu, dtype=torch.bfloat16, head_dim=154) == "sdpa"
    assert (
        resolve_backend("sdpa", device=cpu, dtype=torch.float32, head_dim=8, need_weights=True)
        == "eager"
    )
    with pytest.raises(ValueError, match="flash"):
        resolve_backend("flash", device=cpu, dtype=torch.float32, head_dim=154)


def test_backend_is_logged_once(capsys, monkeypatch):
    monkeypatch.setattr(_attention, "_LOGGED", set())
    model, ids = _model(), _ids()
    with torch.no_grad():
        model(ids)
        model(ids)
        _model(seed=1)(ids)  # another model resolves again, but logs nothing new
    assert capsys.readouterr().err.count("attention backend: sdpa") == 1


def test_backend_is_resolved_once_per_setting(monkeypatch):
    calls = []
    real = _attention.resolve_backend

    def counting(*args, **kwargs):
        calls.append(kwargs["need_weights"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_decoder, "resolve_backend", counting)
    model, ids = _model(), _ids()
    with torch.no_grad():
        for _ in range(3):
            model(ids)
            model(ids, output_attentions=True)
    assert calls == [False, True]
    _with_backend(model, "eager")(ids)  # a new setting is resolved anew
    assert calls == [False, True, False]


def test_backward_runs():
    model = _model().train()
    ids = _ids()
    out = model(ids, seq_ids=torch.zeros_like(ids))
    out.logits.float().logsumexp(-1).mean().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def _bottom_right_causal(q, k, v, scale):
    """Reference for flash-attn: q (T, H, D), k/v (S, H_kv, D), causal aligned bottom-right."""
    t, s = q.shape[0], k.shape[0]
    allowed = torch.arange(s)[None, :] <= torch.arange(t)[:, None] + (s - t)
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1),
        k.transpose(0, 1),
        v.transpose(0, 1),
        attn_mask=allowed,
        scale=scale,
        enable_gqa=True,
    )
    return out.transpose(0, 1)


@pytest.fixture
def fake_flash(monkeypatch):
    """A pure-torch stand-in for the flash_attn package, to run our flash path on the CPU."""
    import sys
    import types

    calls = {"dense": 0, "varlen": 0}

    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
        assert causal and dropout_p == 0.0 and q.shape[-1] == k.shape[-1]
        calls["dense"] += 1
        return torch.stack(
            [_bottom_right_causal(q[b], k[b], v[b], softmax_scale) for b in range(len(q))]
        )

    def flash_attn_varlen_func(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        dropout_p=0.0,
        softmax_scale=None,
        causal=False,
    ):
        assert causal and cu_seqlens_q.dtype == torch.int32 and q.ndim == 3
        calls["varlen"] += 1
        cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        assert max_seqlen_q == max(b - a for a, b in itertools.pairwise(cq))
        out = torch.zeros_like(q)
        for i in range(len(cq) - 1):
            out[cq[i] : cq[i + 1]] = _bottom_right_causal(
                q[cq[i] : cq[i + 1]], k[ck[i] : ck[i + 1]], v[ck[i] : ck[i + 1]], softmax_scale
            )
        return out

    module = types.ModuleType("flash_attn")
    module.flash_attn_func, module.flash_attn_varlen_func = flash_attn_func, flash_attn_varlen_func
    monkeypatch.setitem(sys.modules, "flash_attn", module)
    monkeypatch.setattr(MaxToki, "_attn_backend", lambda self, *a: "flash")
    return calls


@pytest.mark.parametrize("head_dim", [None, 10])
def test_flash_path_with_a_fake_kernel(fake_flash, monkeypatch, head_dim):
    model = _model(head_dim=head_dim)
    if head_dim is not None:  # as on CUDA: 10 → 16
        monkeypatch.setattr(_attention, "_padded_head_dim", lambda d, device: -(-d // 8) * 8)
    docs = [_ids(1, n, seed=n)[0] for n in (7, 12, 5)]
    packed = torch.cat([*docs, torch.zeros(4, dtype=torch.long)])[None]
    seq_ids = torch.cat(
        [torch.full((len(d),), i) for i, d in enumerate(docs)] + [torch.full((4,), 9)]
    )[None]
    valid = torch.arange(28)[None] < 24
    ids = _ids(2, 20)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :6] = False
    with torch.no_grad():
        flash_packed = model(packed, seq_ids=seq_ids, attention_mask=valid).logits[0, :24]
        flash_plain = model(ids).logits
        cache = model.new_kv_cache(2, 20)
        steps = [model(ids[:, :15], attention_mask=mask[:, :15], kv_cache=cache).logits]
        steps += [model(ids[:, t : t + 1], kv_cache=cache).logits for t in range(15, 20)]
        assert fake_flash["dense"] > 0 and fake_flash["varlen"] > 0
        monkeypatch.setattr(MaxToki, "_attn_backend", lambda self, *a: "eager")
        separate = torch.cat([model(d[None]).logits[0] for d in docs])
        eager_plain = model(ids).logits
        eager_padded = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(flash_packed, separate, atol=1e-5, rtol=0)
    torch.testing.assert_close(flash_plain, eager_plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(steps, 1)[mask], eager_padded[mask], atol=1e-5, rtol=0)
