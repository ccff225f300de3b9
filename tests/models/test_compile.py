"""The forward pass has no host syncs: a decode step compiles as one graph (``fullgraph=True``).

``fullgraph=True`` raises on any graph break, e.g. ``bool(tensor)`` or ``int(tensor)`` inside the
forward pass; the eager backend keeps the compilation fast on a CPU.
"""

import pytest
import torch

from maxtoki.models import MaxToki, MaxTokiConfig


def _model(backend: str = "auto") -> MaxToki:
    config = MaxTokiConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_backend=backend,
    )
    torch.manual_seed(0)
    return MaxToki(config).eval()


def _prompts() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(4, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :4] = False  # left padding in row 1
    return ids, mask


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [True, False])
def test_decode_step_compiles_with_fullgraph(backend, padded):
    torch._dynamo.reset()
    model = _model(backend)
    ids, mask = _prompts()
    mask = mask if padded else None
    with torch.no_grad():
        plain, cached = model.new_kv_cache(2, 24), model.new_kv_cache(2, 24)
        model(ids, attention_mask=mask, kv_cache=plain)
        model(ids, attention_mask=mask, kv_cache=cached)

        def step(token: torch.Tensor, cache) -> torch.Tensor:
            return model(token[:, None], kv_cache=cache).logits[:, -1]

        compiled = torch.compile(step, fullgraph=True, backend="eager")
        token = torch.tensor([5, 6])
        for _ in range(6):
            expected = step(token, plain)
            torch.testing.assert_close(compiled(token, cached), expected, atol=0, rtol=0)
            token = expected.argmax(-1)
    assert plain.length == cached.length == 18
    torch.testing.assert_close(cached.n_valid, plain.n_valid)


def test_forward_with_attention_mask_compiles_with_fullgraph():
    torch._dynamo.reset()
    model = _model("sdpa")
    ids, mask = _prompts()

    def forward(ids, mask):
        return model(ids, attention_mask=mask).logits

    compiled = torch.compile(forward, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids, mask), forward(ids, mask), atol=0, rtol=0)
        all_real = torch.ones_like(mask)  # used as given: the same logits as no mask at all
        torch.testing.assert_close(compiled(ids, all_real), model(ids).logits, atol=1e-6, rtol=0)


def test_a_given_mask_is_used_as_given():
    model = _model("sdpa")
    ids, _ = _prompts()
    with torch.no_grad():
        cache = model.new_kv_cache(2, 16)
        model(ids, attention_mask=torch.ones_like(ids, dtype=torch.bool), kv_cache=cache)
        assert cache.valid_keys() is not None  # a mask was passed: its holes are read
        cache = model.new_kv_cache(2, 16)
        model(ids, kv_cache=cache)
        assert cache.valid_keys() is None  # no mask: a causal-only cache
