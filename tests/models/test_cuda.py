"""The decoder on a CUDA GPU against the same weights on the CPU (skipped without a GPU).

Run where a GPU is: float32 logits on the GPU equal the CPU's, bfloat16 autocast stays close,
the KV cache generates what recomputing does, the batch runner picks bfloat16 autocast and
reads embeddings and timelapses close to a float32 CPU run, and the trainer's ``precision="auto"``
trains in bfloat16 autocast on the GPU with a falling loss.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from maxtoki.models import BatchRunner, MaxToki, MaxTokiConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(seed: int = 0) -> MaxToki:
    config = MaxTokiConfig.preset("tiny", max_position_embeddings=512, attn_backend="sdpa")
    torch.manual_seed(seed)
    return MaxToki(config).eval()


def _cells(config: MaxTokiConfig, n: int, seed: int) -> list[np.ndarray]:
    """Cells ``<bos> genes… <eos>`` of 20–60 distinct gene tokens."""
    gen = np.random.default_rng(seed)
    genes = np.arange(4, config.time_token_start_id)
    return [
        np.concatenate([[config.bos_token_id],
                        gen.choice(genes, gen.integers(20, 60), replace=False),
                        [config.eos_token_id]])
        for _ in range(n)
    ]  # fmt: skip


def _padded(cells: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(c) for c in cells)
    ids = torch.zeros(len(cells), width, dtype=torch.long)
    mask = torch.zeros(len(cells), width, dtype=torch.bool)
    for i, c in enumerate(cells):
        ids[i, : len(c)] = torch.as_tensor(c)
        mask[i, : len(c)] = True
    return ids, mask


def test_logits_on_the_gpu_match_the_cpu():
    cpu = _model()
    gpu = copy.deepcopy(cpu).cuda()
    ids, mask = _padded(_cells(cpu.config, 6, seed=0))
    with torch.inference_mode():
        ref = cpu(ids, attention_mask=mask).logits
        fp32 = gpu(ids.cuda(), attention_mask=mask.cuda()).logits.cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = gpu(ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
    real = mask
    scale = ref[real].std()
    assert (fp32[real] - ref[real]).abs().max() < 1e-3 * scale
    cosine = torch.nn.functional.cosine_similarity(bf16[real], ref[real], dim=-1)
    assert cosine.min() > 0.99
    assert (bf16[real] - ref[real]).abs().max() < 0.1 * scale


def test_kv_cache_generates_what_recomputing_does_on_the_gpu():
    model = _model(seed=1).cuda()
    config = model.config
    prompts = []
    for seed, (c1, c2) in enumerate(zip(_cells(config, 3, 5), _cells(config, 3, 6), strict=True)):
        tail = [config.boq_token_id, config.time_token_id(12 * (seed + 1)), config.eoq_token_id]
        dt = [config.time_token_id(24)]
        prompts.append(torch.as_tensor(np.concatenate([c1, dt, c2, tail])).cuda())
    cached = model.generate(prompts, max_new_tokens=40, greedy=True)
    recomputed = model.generate(prompts, max_new_tokens=40, greedy=True, use_cache=False)
    for a, b in zip(cached, recomputed, strict=True):
        assert len(a) > 0 and torch.equal(a, b)


def test_runner_reads_in_bf16_autocast_close_to_the_cpu():
    cpu_model = _model(seed=2)
    config = cpu_model.config
    gpu = BatchRunner(copy.deepcopy(cpu_model), batch_size=4, device="cuda", dtype="auto")
    cpu = BatchRunner(cpu_model, batch_size=4, device="cpu", dtype="float32")
    assert gpu.dtype == torch.bfloat16 and gpu.autocast
    assert gpu.model.dtype == torch.float32  # autocast over float32 weights
    cells = _cells(config, 10, seed=3)
    ref, got = cpu.embeddings(cells), gpu.embeddings(cells)
    cosine = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.99
    prompts = []
    for c1, c2, q in zip(cells[:4], cells[4:8], cells[1:5], strict=True):
        tail = [config.boq_token_id, *q, config.eoq_token_id]
        prompts.append(np.concatenate([c1, [config.time_token_id(24)], c2, tail]))
    months_cpu, months_gpu = cpu.timelapses(prompts), gpu.timelapses(prompts)
    assert np.isfinite(months_gpu).all()
    span = config.time_token_range[-1] - config.time_token_range[0]
    assert np.abs(months_gpu - months_cpu).max() < 0.02 * span


def test_trainer_runs_in_bf16_autocast_and_the_loss_falls():
    import train_data as data  # tests/train_data.py: random tokens, no AnnData

    from maxtoki.train import TrainConfig, Trainer, build_model

    model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
    config = TrainConfig(
        steps=20, global_batch_size=8, micro_batch_size=8, lr=3e-3, warmup_steps=2,
        log_interval=1, quiet=True, device="cuda", precision="auto",
    )  # fmt: skip
    trainer = Trainer(model, data.dataset(8), None, config)  # 8 examples: one batch, repeated
    history = trainer.fit()
    assert trainer.info.device.type == "cuda"
    assert next(trainer.raw_model.parameters()).device.type == "cuda"
    assert trainer._autocast is not None and trainer._autocast.fast_dtype == torch.bfloat16
    loss = history.loc[history["kind"] == "train", "loss"].to_numpy()
    assert len(loss) == 20 and np.isfinite(loss).all()
    # the first loss is the initial model's (≈ 7.9 on the CPU); the last steps settle near 3
    assert loss[-5:].max() < loss[0] and loss[-5:].mean() < 0.6 * loss[0], loss
