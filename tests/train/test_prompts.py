"""The prompt layout of DESIGN.md §1, token by token; truncation, collation and packing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import train_data

from maxtoki.pp import GeneVocab
from maxtoki.train import ArrayTokens, CellDataset, Collator, PromptDataset, TrainConfig, Trainer
from maxtoki.train._distributed import DistInfo

BOS, EOS, PAD = 2, 3, 0
# genes G0…G9 → ids 4…13; months -10…10 → ids 14…34 (id = 24 + months); <boq> 35, <eoq> 36
VOCAB = GeneVocab.from_genes({f"G{i}": 1.0 for i in range(10)}, time_range=(-10, 10))
BOQ, EOQ = 35, 36
CELLS = {
    "c0": [BOS, 4, 5, 6, EOS],  # 10 months
    "c1": [BOS, 7, 8, EOS],  # 13 months
    "c2": [BOS, 9, EOS],  # 15 months
    "q": [BOS, 10, 11, 12, EOS],  # 20 months
}


def t(months: int) -> int:
    return 24 + months


def _tokens() -> ArrayTokens:
    width = max(len(c) for c in CELLS.values())
    mat = np.zeros((len(CELLS), width), dtype=np.uint16)
    for i, c in enumerate(CELLS.values()):
        mat[i, : len(c)] = c
    return ArrayTokens(mat, [len(c) for c in CELLS.values()], names=list(CELLS))


def _prompts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": ["TimeBetweenCells", "NextCell", "TimeBetweenCells"],
            "split": ["train"] * 3,
            "n_context": [2, 3, 3],
            "ctx0": ["c0", "c0", "c0"],
            "ctx1": ["c1", "c1", "c1"],
            "ctx2": [None, "c2", "c2"],
            "dt0": pd.array([3, 3, 3], dtype="Int64"),
            "dt1": pd.array([pd.NA, 2, 2], dtype="Int64"),
            "query": ["q", "q", "q"],
            "dt_query": [7, 5, 5],
        }
    )


def test_vocab_layout_assumed_here():
    assert (VOCAB.boq_id, VOCAB.eoq_id) == (BOQ, EOQ)
    assert VOCAB.time_token_id(0) == t(0) and VOCAB.time_token_id(-10) == 14


def test_time_between_cells_layout():
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)
    ex = ds[0]
    #                 <bos> cell1 <eos>   Δt1   <bos> cell2 <eos>  <boq> <bos> query <eos>     <eoq>
    expected = [BOS, 4, 5, 6, EOS, t(3), BOS, 7, 8, EOS, BOQ, BOS, 10, 11, 12, EOS, EOQ]
    assert ex["input_ids"].tolist() == expected
    assert ex["labels"].tolist() == [-100] * len(expected)  # the answer is read at <eoq>
    assert ex["eoq_pos"] == len(expected) - 1
    assert ex["input_ids"][ex["eoq_pos"]] == EOQ
    assert ex["time_target"] == 7.0 and ex["task"] == 0


def test_time_between_cells_three_context_cells():
    ex = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)[2]
    expected = [BOS, 4, 5, 6, EOS, t(3), BOS, 7, 8, EOS, t(2), BOS, 9, EOS,
                BOQ, BOS, 10, 11, 12, EOS, EOQ]  # fmt: skip
    assert ex["input_ids"].tolist() == expected
    assert ex["time_target"] == 5.0


def test_next_cell_layout():
    ex = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)[1]
    prompt = [BOS, 4, 5, 6, EOS, t(3), BOS, 7, 8, EOS, t(2), BOS, 9, EOS, BOQ, t(5), EOQ]
    answer = [BOS, 10, 11, 12, EOS]
    assert ex["input_ids"].tolist() == prompt + answer
    # labels: -100 on the prompt, the answer tokens themselves on the answer positions; the
    # token at i is predicted from position i - 1, so <eoq> predicts the answer's <bos>
    assert ex["labels"].tolist() == [-100] * len(prompt) + answer
    assert ex["eoq_pos"] == len(prompt) - 1
    assert np.isnan(ex["time_target"]) and ex["task"] == 1


def test_max_genes_per_cell_keeps_top_ranked():
    ex = PromptDataset(_prompts(), _tokens(), vocab=VOCAB, max_genes_per_cell=1)[1]
    prompt = [BOS, 4, EOS, t(3), BOS, 7, EOS, t(2), BOS, 9, EOS, BOQ, t(5), EOQ]
    assert ex["input_ids"].tolist() == [*prompt, BOS, 10, EOS]


def test_truncation_cuts_the_first_context_cell():
    full = len(PromptDataset(_prompts(), _tokens(), vocab=VOCAB)[0]["input_ids"])  # 17
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB, max_length=full - 2)
    ex = ds[0]
    assert ex["input_ids"].tolist() == [BOS, 4, EOS, t(3), BOS, 7, 8, EOS, BOQ, BOS, 10, 11, 12,
                                        EOS, EOQ]  # fmt: skip
    assert len(ex["input_ids"]) == full - 2


def test_too_long_without_truncation_is_an_error():
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB, max_length=12, truncate=False)
    with pytest.raises(
        ValueError,
        match=r"prompt 0: a prompt needs 17 tokens but max_length is 12 \(truncation is off\)",
    ):
        ds[0]
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB, max_length=10, truncate=True)
    with pytest.raises(ValueError, match="first context cell cut to one gene"):
        ds[0]


def test_bad_tables():
    with pytest.raises(ValueError, match="lacks columns"):
        PromptDataset(_prompts().drop(columns="query"), _tokens(), vocab=VOCAB)
    bad = _prompts()
    bad.loc[0, "query"] = "nope"
    with pytest.raises(ValueError, match=r"not in the token source \(e.g. \['nope'\]\)"):
        PromptDataset(bad, _tokens(), vocab=VOCAB)
    bad = _prompts()
    bad.loc[0, "dt_query"] = 50
    with pytest.raises(ValueError, match="outside the time tokens"):
        PromptDataset(bad, _tokens(), vocab=VOCAB)
    with pytest.raises(ValueError, match="time tokens"):
        PromptDataset(
            _prompts(), _tokens(), vocab=GeneVocab.from_genes({"G0": 1.0}, time_range=None)
        )


def test_task_mix_reassigns_deterministically():
    df = pd.concat([_prompts()] * 100, ignore_index=True)
    a = PromptDataset(df, _tokens(), vocab=VOCAB, task_mix=0.8, seed=1)
    b = PromptDataset(df, _tokens(), vocab=VOCAB, task_mix=0.8, seed=1)
    assert np.array_equal(a.tasks, b.tasks)
    assert 0.7 < (a.tasks == 0).mean() < 0.9
    assert (PromptDataset(df, _tokens(), vocab=VOCAB, task_mix=0.0).tasks == 1).all()


def test_stage1_cells():
    ds = CellDataset(_tokens(), max_length=4)
    ex = ds[0]
    assert ex["input_ids"].tolist() == [BOS, 4, 5, EOS]  # cut to max_length - 2 genes
    assert ex["labels"].tolist() == [-100, 4, 5, EOS]  # next gene on every gene and <eos>
    assert ex["task"] == 2 and ex["eoq_pos"] == -1


def test_collator_right_pads():
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)
    batch = Collator()([ds[0], ds[1]])
    assert batch["input_ids"].shape == (2, 22)
    assert batch["input_ids"][0, 17:].tolist() == [PAD] * 5
    assert batch["labels"][0, 17:].tolist() == [-100] * 5
    assert batch["attention_mask"][0].sum() == 17 and batch["attention_mask"][1].all()
    assert batch["position_ids"][1].tolist() == list(range(22))  # run through the whole prompt
    assert batch["eoq_index"].tolist() == [[0, 16], [1, 16]]
    assert batch["task"].tolist() == [0, 1]
    assert batch["time_target"][0] == 7 and torch.isnan(batch["time_target"][1])
    assert batch["n_tokens"] == 39
    assert "seq_ids" not in batch


def test_collator_packs_with_document_ids():
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)
    batch = Collator(pack=True, max_length=40)([ds[0], ds[1], ds[2]])
    # 17 + 22 fit one row of 40; the third (21) opens a second row
    assert batch["input_ids"].shape == (2, 39)
    assert batch["seq_ids"][0].tolist() == [0] * 17 + [1] * 22
    assert batch["seq_ids"][1].tolist() == [0] * 21 + [-1] * 18
    assert batch["position_ids"][0].tolist() == list(range(17)) + list(range(22))
    assert batch["eoq_index"].tolist() == [[0, 16], [0, 17 + 16], [1, 20]]
    assert batch["input_ids"][0, 17:].tolist() == ds[1]["input_ids"].tolist()
    with pytest.raises(ValueError, match="max_length"):
        Collator(pack=True)


def _trainer_for_losses(model, pack=False, **config):
    cfg = TrainConfig(pack=pack, max_length=64, quiet=True, **config)
    tr = Trainer(model, [], None, cfg)
    tr.info = DistInfo()
    tr._mcfg = model.config
    return tr


def test_losses_read_the_right_positions():
    from maxtoki.models import MaxToki, MaxTokiConfig, timelapse_loss

    torch.manual_seed(0)
    cfg = MaxTokiConfig.preset(
        "tiny",
        **VOCAB.model_config_fields(),
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = MaxToki(cfg)
    ds = PromptDataset(_prompts(), _tokens(), vocab=VOCAB)
    ex_time, ex_next = ds[0], ds[1]
    with torch.no_grad():
        out = _trainer_for_losses(model)._losses(model, Collator()([ex_time, ex_next]))
        logits_next = model(torch.tensor(ex_next["input_ids"])[None]).logits[0]
        e = ex_next["eoq_pos"]
        ce = torch.nn.functional.cross_entropy(
            logits_next[e:-1], torch.tensor(ex_next["input_ids"][e + 1 :])
        )
        logits_time = model(torch.tensor(ex_time["input_ids"])[None]).logits[0, ex_time["eoq_pos"]]
        tl = timelapse_loss(logits_time[None], torch.tensor([7.0]), cfg)
    assert out["n_ce"] == 5 and out["n_time"] == 1
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["time"], tl)
    torch.testing.assert_close(out["loss"], 0.5 * ce + 0.5 * tl)
    # packed rows with document masks give the same losses
    with torch.no_grad():
        packed = _trainer_for_losses(model, pack=True)._losses(
            model, Collator(pack=True, max_length=64)([ex_time, ex_next])
        )
    torch.testing.assert_close(packed["loss"], out["loss"], rtol=1e-5, atol=1e-5)
    # the two-hot term is added to the timelapse loss, the CE left alone
    from maxtoki.train._losses import _two_hot_time_ce

    with torch.no_grad():
        two_hot = _trainer_for_losses(model, time_class_weight=2.0)._losses(
            model, Collator()([ex_time, ex_next])
        )
        expected = tl + 2.0 * _two_hot_time_ce(logits_time[None], torch.tensor([7.0]), cfg)
    torch.testing.assert_close(two_hot["time"], expected)
    torch.testing.assert_close(two_hot["ce"], ce)


def test_read_prompts_missing_file(tmp_path):
    from maxtoki.train._prompts import read_prompts

    with pytest.raises(FileNotFoundError, match="trajectories"):
        read_prompts(tmp_path / "prompts.csv")


def test_shared_data_is_well_formed():
    ds = train_data.dataset()
    assert len(ds) == 64
    assert {int(ds[i]["task"]) for i in range(4)} == {0, 1}
    assert all(len(ds[i]["input_ids"]) <= 64 for i in range(len(ds)))
