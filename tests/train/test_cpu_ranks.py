"""mt.tl.train(processes=2): spawned CPU ranks train the model one process would, step for step."""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import torch

import maxtoki as mt
from maxtoki.train._cpu_ranks import _wait

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.distributed.is_available(), reason="torch.distributed is unavailable"
    ),
]
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture(scope="module")
def cells():
    adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=20, seed=0)
    vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    mt.pp.tokenize(adata, vocab=vocab)
    return adata, vocab


def _train(adata, vocab, **kwargs):
    # one example per micro-batch: each step's examples and their loss terms are the same
    # whether one process or two ranks draw them, so only the summation order differs
    config = {"global_batch_size": 8, "micro_batch_size": 1, "eval_interval": 3}
    return mt.tl.train(
        adata, vocab=vocab, steps=6, max_genes_per_cell=16, model_overrides=SMALL,
        config=config, device="cpu", quiet=True, **kwargs,
    )  # fmt: skip


def test_two_ranks_train_what_one_process_trains(cells):
    adata, vocab = cells
    one, history_one = _train(adata, vocab)
    start = copy.deepcopy(one)  # a model to continue: processes train the given one in place
    before = {k: v.clone() for k, v in start.state_dict().items()}
    two, history_two = _train(adata, vocab, processes=2)
    continued, _ = _train(adata, vocab, model=start, processes=2)

    assert not two.training and two.vocab is not None
    diffs = {k: float((v - two.state_dict()[k]).abs().max()) for k, v in one.state_dict().items()}
    assert max(diffs.values()) < 1e-5, diffs
    untrained = mt.train.build_model("tiny", vocab=vocab, overrides=SMALL, seed=0)
    moved = max(float((v - untrained.state_dict()[k]).abs().max()) for k, v in before.items())
    assert moved > 1e-3  # the comparison has power: training moves the weights this much
    # the logs are the global batch's, not rank 0's share
    cols = ["kind", "step"]
    assert history_one[cols].equals(history_two[cols])
    np.testing.assert_allclose(history_two["loss"], history_one["loss"], rtol=1e-4)
    assert continued is start
    assert not start.training
    assert any(not torch.equal(v, start.state_dict()[k]) for k, v in before.items())


def test_bad_processes_fail_before_any_rank_starts(cells):
    adata, vocab = cells
    with pytest.raises(ValueError, match="processes"):
        _train(adata, vocab, processes=0)
    with pytest.raises(ValueError, match=r"processes must be a positive integer, got 2\.0"):
        _train(adata, vocab, processes=2.0)
    with pytest.raises(ValueError, match=r"micro_batch_size × processes \(1 × 3\)"):
        _train(adata, vocab, processes=3)
    with pytest.raises(ValueError, match="device='cpu'"):
        mt.tl.train(
            adata, vocab=vocab, steps=1, max_genes_per_cell=16, model_overrides=SMALL,
            device="cuda", processes=2, quiet=True,
        )  # fmt: skip


def test_under_torchrun_processes_are_refused(cells, monkeypatch):
    adata, vocab = cells
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="already a torchrun rank"):
        _train(adata, vocab, processes=2)


def test_a_failing_rank_raises_here_and_ends_the_others(cells, tmp_path):
    adata, vocab = cells
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where out_dir should be a folder")
    model = copy.deepcopy(mt.train.build_model("tiny", vocab=vocab, overrides=SMALL, seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # rank 0 fails on the file; rank 1 then loses its peer: the error names rank 0's cause
    with pytest.raises(RuntimeError, match=r"(?s)failed on rank 0 \(the first.*not_a_folder"):
        _train(adata, vocab, model=model, processes=2, out_dir=str(blocker))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


class _EndsItsProcess:
    """Unpickled in a rank, ends that process at once (as a crash or the OOM killer would)."""

    def __reduce__(self):
        return os._exit, (3,)


@pytest.mark.timeout(180)
def test_a_rank_that_dies_while_starting_raises_here(cells):
    _, vocab = cells
    model = mt.train.build_model("tiny", vocab=vocab, overrides=SMALL, seed=0)
    config = mt.train.TrainConfig(device="cpu", global_batch_size=2, micro_batch_size=1)
    # the ranks die before reading the 8 MB after the first dataset: spawn's pipe would block
    # the parent's write of it for ever, with no rank left to read it
    unread = np.zeros(2**20)
    with pytest.raises(Exception, match="exit code 3"):
        mt.train.fit_on_cpu_ranks(
            model, _EndsItsProcess(), unread, config, vocab=vocab, processes=2
        )


def _sleepers(seconds):
    processes = [
        multiprocessing.get_context("spawn").Process(target=time.sleep, args=(s,)) for s in seconds
    ]
    for process in processes:
        process.start()
    return processes


def _finish(folder, *ranks):
    for rank in ranks:
        (folder / f"finished_rank{rank}").touch()


@pytest.mark.timeout(120)
def test_ranks_hung_after_their_work_are_ended(tmp_path):
    _finish(tmp_path, 0, 1)
    hung = _sleepers([600, 600])  # as ranks stuck in gloo's teardown
    start = time.monotonic()
    _wait(hung, tmp_path, grace=2)
    assert time.monotonic() - start < 60
    assert [process.exitcode for process in hung] == [-15, -15]  # SIGTERM


@pytest.mark.timeout(120)
def test_ranks_are_waited_for_until_they_exit(tmp_path):
    slow = _sleepers([4, 1])  # not finished yet: no grace, however long they take
    _wait(slow, tmp_path, grace=0)
    _finish(tmp_path, 0, 1)
    exiting = _sleepers([4, 1])  # finished, they exit within the grace
    _wait(exiting, tmp_path, grace=30)
    assert [process.exitcode for process in slow + exiting] == [0, 0, 0, 0]


@pytest.mark.timeout(120)
def test_a_rank_killed_after_its_work_is_no_failure_but_before_it_is(tmp_path):
    ranks = _sleepers([600, 2])
    _finish(tmp_path, 0)
    os.kill(ranks[0].pid, signal.SIGKILL)  # as gloo's teardown aborting a finished rank
    _wait(ranks, tmp_path, grace=30)  # rank 1 then exits by itself
    assert [process.exitcode for process in ranks] == [-9, 0]

    ranks = _sleepers([600, 600])
    os.kill(ranks[1].pid, signal.SIGKILL)
    try:
        with pytest.raises(RuntimeError, match="rank 1 ended with signal SIGKILL before it fin"):
            _wait(ranks, tmp_path / "elsewhere", grace=30)
    finally:
        for process in ranks:
            process.kill()
            process.join()
