"""torchrun on CPU (gloo): DDP and FSDP2 keep the ranks identical; checkpoints, resume, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import maxtoki as mt

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.distributed.is_available(), reason="torch.distributed is unavailable"
    ),
]
TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
import train_data as data  # noqa: E402

SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    import train_data as data
    from maxtoki.train import TrainConfig, Trainer, build_model, destroy_distributed

    strategy, out = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])

    def run(steps, out_dir=None, resume=False):
        model = build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0)
        cfg = TrainConfig(steps=steps, global_batch_size=8, micro_batch_size=2, eval_interval=2,
                          quiet=True, distributed=strategy, warmup_steps=1, device="cpu",
                          out_dir=out_dir, checkpoint_interval=2, resume=resume)
        trainer = Trainer(model, data.dataset(), data.dataset(16, seed=1), cfg)
        history = trainer.fit()
        opts = StateDictOptions(full_state_dict=True)
        full = get_model_state_dict(trainer._wrapped, options=opts)
        return trainer, history, {{k: v.detach().cpu().clone() for k, v in full.items()}}

    trainer, history, params = run(6, out_dir=os.path.join(out, "run"))
    trainer.save_model(os.path.join(out, "model"))
    torch.save(params, os.path.join(out, f"rank{{rank}}.pt"))
    if strategy == "fsdp2":  # resuming at step 4 under FSDP2 ends where the straight run ended
        step4 = os.path.join(out, "run", "step_000004")
        _, _, resumed = run(6, out_dir=os.path.join(out, "run2"), resume=step4)
        torch.save(resumed, os.path.join(out, f"resumed{{rank}}.pt"))
    if rank == 0:
        history.to_csv(os.path.join(out, "history.csv"))
    destroy_distributed(trainer.info)
    """
)


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_torchrun_two_ranks_stay_identical(tmp_path, strategy):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    done = _torchrun([str(script), strategy, str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys() and len(r0) > 5
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    init = mt.train.build_model("tiny", vocab=data.VOCAB, overrides=data.TINY, seed=0).state_dict()
    assert not torch.equal(init["lm_head.weight"], r0["lm_head.weight"])  # it trained
    # rank 0 wrote the checkpoints and the final model from the full (gathered) weights
    saved = mt.models.MaxToki.from_pretrained(tmp_path / "model", device="cpu").state_dict()
    assert all(torch.equal(saved[k], r0[k]) for k in r0)
    ckpt = mt.models.MaxToki.from_pretrained(
        tmp_path / "run" / "step_000006", device="cpu"
    ).state_dict()
    assert all(torch.equal(ckpt[k], r0[k]) for k in r0)
    if strategy == "fsdp2":
        for rank in (0, 1):
            resumed = torch.load(tmp_path / f"resumed{rank}.pt")
            assert all(torch.equal(resumed[k], r0[k]) for k in r0)


def test_cli_under_torchrun(tmp_path):
    adata = mt.datasets.aging_atlas(
        n_donors=10, n_cells_per_donor=8, n_genes=200, n_cell_types=3, seed=2
    )
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    adata.write_h5ad(tmp_path / "atlas.h5ad")
    mt.pp.tokenize_corpus(tmp_path / "atlas.h5ad", tmp_path / "store", vocab=vocab)
    mt.pp.trajectories(adata, n_context=2, n_prompts=48).to_csv(tmp_path / "prompts.csv")
    (tmp_path / "train.yaml").write_text(
        "model: tiny\nmodel_overrides: {hidden_size: 32, intermediate_size: 64}\ntokens: store\n"
        "prompts: prompts.csv\nmax_genes_per_cell: 12\nsteps: 2\nglobal_batch_size: 8\n"
        "micro_batch_size: 2\neval_interval: 2\nval_fraction: 0.2\nout_dir: run\nquiet: true\n"
    )
    done = _torchrun(["-m", "maxtoki.train", "train.yaml", "distributed=ddp"], tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "world size 2, ddp" in done.stderr
    assert done.stderr.count("maxtoki attention backend") == 1  # rank 0 logs, rank 1 is quiet
    model = mt.models.MaxToki.from_pretrained(tmp_path / "run" / "model", device="cpu")
    assert model.config.vocab_size == len(vocab) and model.config.max_genes_per_cell == 12
    assert (tmp_path / "run" / "latest").read_text().strip() == "step_000002"
