"""Inference precision: ``dtype='auto'`` (bf16 autocast on CUDA, the weights' dtype on the CPU).

The CUDA side is checked through the pure resolver; the autocast path itself runs on the CPU
(explicit ``dtype='bfloat16'``), the same code that CUDA runs.
"""

import numpy as np
import pytest
import torch

import maxtoki as mt
from maxtoki.models import BatchRunner, MaxToki, MaxTokiConfig, _runner, predict_timelapse
from maxtoki.models._runner import inference_dtype
from maxtoki.pp import GeneVocab

GENES = {f"ENSG{i:011d}": 1.0 + i / 10 for i in range(30)}
VOCAB = GeneVocab.from_genes(GENES, time_range=None).with_time_tokens((-10, 9))
SIZES = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
)


def _model() -> MaxToki:
    torch.manual_seed(0)
    return MaxToki(MaxTokiConfig(**SIZES, **VOCAB.model_config_fields()), vocab=VOCAB)


def _cells(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    genes = VOCAB.gene_token_ids
    return [
        np.concatenate([[2], gen.choice(genes, size=int(gen.integers(4, 12)), replace=False), [3]])
        for _ in range(n)
    ]


def _prompts(n: int = 5) -> list[np.ndarray]:
    """TimeBetweenCells prompts: ctx <eos> Δt <bos> ctx <eos> <boq> <bos> query <eos> <eoq>."""
    cells = _cells(3 * n, seed=1)
    dt = VOCAB.time_token_id(3)
    return [
        np.concatenate([a, [dt], b, [VOCAB.boq_id], q, [VOCAB.eoq_id]])
        for a, b, q in zip(cells[::3], cells[1::3], cells[2::3], strict=True)
    ]


@pytest.mark.parametrize(
    ("dtype", "device", "weights", "expected"),
    [
        ("auto", "cuda", torch.float32, torch.bfloat16),
        ("auto", "cuda:1", torch.float32, torch.bfloat16),
        (None, torch.device("cuda", 0), torch.float32, torch.bfloat16),
        ("auto", "cpu", torch.float32, torch.float32),
        (None, "cpu", torch.float32, torch.float32),
        ("auto", "cpu", torch.float64, torch.float64),  # the weights' own dtype on the CPU
        ("auto", "cuda", torch.float16, torch.float16),  # a half-precision model stays as it is
        ("auto", "cuda", torch.bfloat16, torch.bfloat16),
        # an explicit dtype wins
        (torch.float32, "cuda", torch.float32, torch.float32),
        ("float32", "cuda", torch.float32, torch.float32),
        ("fp16", "cuda", torch.float32, torch.float16),
        ("bfloat16", "cpu", torch.float32, torch.bfloat16),
        ("torch.float64", "cpu", torch.float32, torch.float64),
        (torch.float32, "cpu", torch.bfloat16, torch.float32),
    ],
)
def test_the_resolver(dtype, device, weights, expected):
    assert inference_dtype(dtype, device, weights=weights) == expected


def test_auto_falls_back_to_float16_on_gpus_without_bfloat16():
    assert inference_dtype("auto", "cuda", bf16_supported=False) == torch.float16
    assert inference_dtype("bfloat16", "cuda", bf16_supported=False) == torch.bfloat16


@pytest.mark.parametrize("bad", ["int8", "float8", "", torch.int64, 16])
def test_the_resolver_refuses_what_is_not_a_float_dtype(bad):
    with pytest.raises(ValueError, match="dtype must be"):
        inference_dtype(bad, "cpu")


def test_the_cpu_path_is_the_plain_float32_forward():
    """``auto`` on the CPU: no autocast, weights untouched, each result the model's own forward."""
    model = _model()
    runner = BatchRunner(model, batch_size=4, device="cpu")
    assert runner.dtype == torch.float32 and not runner.autocast
    assert model.dtype == torch.float32 and runner.dtype_name == "float32"
    prompts, cells = _prompts(), _cells()
    months, emb = runner.timelapses(prompts), runner.embeddings(cells)
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            logits = model(torch.as_tensor(p)[None]).logits[0, -1]
            expected = predict_timelapse(logits, model.config)[0].item()
            assert months[i] == pytest.approx(expected, abs=1e-4)
        for i, c in enumerate(cells):
            expected = model.embed(torch.as_tensor(c)[None])[0].numpy()
            np.testing.assert_allclose(emb[i], expected, atol=1e-5, rtol=0)
    # the same numbers as an explicit float32 run, bit for bit
    explicit = BatchRunner(model, batch_size=4, device="cpu", dtype=torch.float32)
    np.testing.assert_array_equal(explicit.timelapses(prompts), months)
    np.testing.assert_array_equal(explicit.embeddings(cells), emb)


def test_bfloat16_runs_under_autocast_with_float32_weights():
    model = _model()
    reference = BatchRunner(model, device="cpu")
    months, emb = reference.timelapses(_prompts()), reference.embeddings(_cells())
    runner = BatchRunner(model, device="cpu", dtype="bfloat16")
    assert runner.autocast and runner.dtype == torch.bfloat16
    seen = []
    hook = model.model.layers[0].mlp.down_proj.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype)
    )
    try:
        half_months, half_emb = runner.timelapses(_prompts()), runner.embeddings(_cells())
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the matmuls ran in bfloat16 …
    assert model.dtype == torch.float32  # … on float32 weights, left as they were
    assert half_months.dtype == np.float64 and half_emb.dtype == np.float32
    assert not np.array_equal(half_emb, emb)
    np.testing.assert_allclose(half_emb, emb, atol=0.1, rtol=0.05)
    np.testing.assert_allclose(half_months, months, atol=0.5)
    # generation under autocast (its KV cache takes the autocast dtype)
    config = model.config
    prompt = np.concatenate([_cells(1)[0], [VOCAB.boq_id, VOCAB.time_token_id(2), VOCAB.eoq_id]])
    (cell,) = runner.generate([prompt], max_genes=5, random_state=0)
    assert cell[0] == config.bos_token_id and cell[-1] == config.eos_token_id
    genes = cell[1:-1]
    assert 1 <= len(genes) <= 5 and len(set(genes.tolist())) == len(genes)
    assert set(genes.tolist()) <= set(VOCAB.gene_token_ids.tolist())


def test_a_wider_dtype_than_the_weights_casts_the_model():
    model = _model()
    reference = BatchRunner(model, device="cpu").embeddings(_cells())
    runner = BatchRunner(model, device="cpu", dtype="float64")
    assert not runner.autocast and model.dtype == torch.float64
    np.testing.assert_allclose(runner.embeddings(_cells()), reference, atol=1e-5)


def test_settings_dtype_is_the_default():
    model = _model()
    with mt.settings.override(dtype="bfloat16"):
        assert BatchRunner(model, device="cpu").dtype == torch.bfloat16
        assert BatchRunner(model, device="cpu", dtype="float32").dtype == torch.float32
    assert BatchRunner(model, device="cpu").dtype == torch.float32
    with mt.settings.override(dtype="int8"), pytest.raises(ValueError, match="dtype must be"):
        BatchRunner(model, device="cpu")


def test_device_dtype_and_backend_are_stated_once(monkeypatch):
    lines = []
    monkeypatch.setattr(_runner, "_ANNOUNCED", set())
    monkeypatch.setattr(_runner.logg, "info", lambda msg, **kw: lines.append(msg))
    model = _model()
    runner = BatchRunner(model, device="cpu")
    runner.embeddings(_cells())
    runner.timelapses(_prompts())
    BatchRunner(model, device="cpu").embeddings(_cells())
    stated = [line for line in lines if line.startswith("maxtoki inference on")]
    assert stated == ["maxtoki inference on cpu in float32, attention: sdpa"]
    list(runner.attention(_cells(2), layers=[0]))
    BatchRunner(model, device="cpu", dtype="bfloat16").embeddings(_cells())
    stated = [line for line in lines if line.startswith("maxtoki inference on")]
    assert stated[1:] == [
        "maxtoki inference on cpu in float32, attention: eager",
        "maxtoki inference on cpu in bfloat16 autocast (float32 weights), attention: sdpa",
    ]


def test_tools_record_the_dtype():
    adata = mt.datasets.aging_atlas(n_donors=16, n_cells_per_donor=2, n_genes=200, seed=0)
    vocab = GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    config = MaxTokiConfig(**SIZES, **vocab.model_config_fields())
    model = MaxToki(config, vocab=vocab)
    mt.tl.embed(adata, model=model, device="cpu", max_genes=8)
    assert adata.uns["maxtoki"]["params"]["dtype"] == "float32"
    with mt.settings.override(dtype="bfloat16"):
        mt.tl.embed(adata, model=model, device="cpu", max_genes=8, key_added="half")
    assert adata.uns["half"]["params"]["dtype"] == "bfloat16"
    np.testing.assert_allclose(adata.obsm["X_half"], adata.obsm["X_maxtoki"], atol=0.1, rtol=0.05)
