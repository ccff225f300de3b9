"""PromptDataset.to_hf_dataset: prompts in the official assembled layout (HF ``datasets``).

The official cell paragraph assembler (``data_prep/cell_paragraph_assembler.py``,
``is_train=True``) writes ``input_ids`` = prompt + answer and ``response_len``; the official
collator (``tokenizer.py``, ``collate_batch_multitask``) reads ``input_ids`` only, tells the task by
the token after ``<eoq>`` (a time token: TimeBetweenCells; ``<bos>``: NextCell) and puts the loss
on the answer. These tests check that layout token by token and against ``PromptEncoder.encode``.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import maxtoki as mt
from maxtoki.pp import GeneVocab, PromptEncoder
from maxtoki.train import ArrayTokens, PromptDataset

datasets = pytest.importorskip("datasets", reason="the optional `datasets` package is missing")

BOS, EOS = 2, 3
# genes G0…G9 → ids 4…13; months -10…10 → ids 14…34 (id = 24 + months); <boq> 35, <eoq> 36
VOCAB = GeneVocab.from_genes({f"G{i}": 1.0 for i in range(10)}, time_range=(-10, 10))
BOQ, EOQ = 35, 36
CELLS = {
    "c0": [BOS, 4, 5, 6, EOS],
    "c1": [BOS, 7, 8, EOS],
    "c2": [BOS, 9, EOS],
    "q": [BOS, 10, 11, 12, EOS],
}


def t(months: int) -> int:
    return 24 + months


def tokens() -> ArrayTokens:
    mat = np.zeros((len(CELLS), 5), dtype=np.uint16)
    for i, c in enumerate(CELLS.values()):
        mat[i, : len(c)] = c
    return ArrayTokens(mat, [len(c) for c in CELLS.values()], names=list(CELLS))


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": ["TimeBetweenCells", "NextCell"],
            "split": ["train", "eval"],
            "group": ["a|F", "a|F"],
            "n_context": [2, 3],
            "ctx0": ["c0", "c0"],
            "ctx1": ["c1", "c1"],
            "ctx2": [None, "c2"],
            "dt0": pd.array([3, 3], dtype="Int64"),
            "dt1": pd.array([pd.NA, 2], dtype="Int64"),
            "query": ["q", "q"],
            "dt_query": [7, -5],
        }
    )


def test_the_official_layout_token_by_token(tmp_path):
    ds = PromptDataset(table(), tokens(), vocab=VOCAB).to_hf_dataset(
        keys=["query", "split", "dt1"], cache_dir=str(tmp_path)
    )
    assert ds.column_names == [
        "input_ids", "response_len", "timesteps", "cell_indices", "task", "query", "split", "dt1"
    ]  # fmt: skip
    tbc, nc = ds[0], ds[1]
    context2 = [BOS, 4, 5, 6, EOS, t(3), BOS, 7, 8, EOS]
    assert tbc["input_ids"] == [*context2, BOQ, BOS, 10, 11, 12, EOS, EOQ, t(7)]
    assert tbc["response_len"] == 1 and tbc["task"] == "TimeBetweenCells"
    assert tbc["timesteps"] == [3, 7] and tbc["cell_indices"] == [0, 1, 3]
    context3 = [*context2, t(2), BOS, 9, EOS]
    assert nc["input_ids"] == [*context3, BOQ, t(-5), EOQ, BOS, 10, 11, 12, EOS]
    assert nc["response_len"] == 5 and nc["task"] == "NextCell"
    assert nc["timesteps"] == [3, 2, -5] and nc["cell_indices"] == [0, 1, 2, 3]
    assert [tbc["dt1"], nc["dt1"]] == [None, 2] and ds["split"] == ["train", "eval"]
    assert ds.features["input_ids"].feature.dtype == "int32"


def official_task(ids: list[int], vocab: GeneVocab) -> str:
    """The official collator's reading: the token after ``<eoq>`` names the task."""
    eoq = ids.index(vocab.eoq_id)
    lo, hi = vocab.time_token_id(vocab.time_range[0]), vocab.time_token_id(vocab.time_range[1])
    if lo <= ids[eoq + 1] <= hi:
        return "TimeBetweenCells"
    assert ids[eoq + 1] == vocab.bos_id and ids[-1] == vocab.eos_id
    return "NextCell"


@pytest.fixture(scope="module")
def atlas():
    with mt.settings.override(verbosity=0):  # a module fixture: not left quiet for later tests
        adata = mt.datasets.aging_atlas(n_donors=12, n_cells_per_donor=12, n_genes=200, seed=0)
        vocab = GeneVocab.from_genes(mt.pp.gene_medians(adata))
        mt.pp.tokenize(adata, vocab=vocab)
        prompts = mt.pp.trajectories(adata, n_prompts=40, random_state=0)
    return adata, vocab, prompts


def test_rows_are_the_encoders_prompts_and_answers(atlas, tmp_path):
    adata, vocab, prompts = atlas
    cells = ArrayTokens(
        adata.obsm["maxtoki_tokens"], adata.obs["maxtoki_n_tokens"], names=adata.obs_names
    )
    ds = PromptDataset(prompts, cells, vocab=vocab).to_hf_dataset(cache_dir=str(tmp_path))
    ds.save_to_disk(str(tmp_path / "prompts.dataset"))
    ds = datasets.load_from_disk(str(tmp_path / "prompts.dataset"))
    assert len(ds) == len(prompts)
    enc = PromptEncoder(vocab)
    row_of = {n: i for i, n in enumerate(adata.obs_names)}
    for i, row in prompts.reset_index(drop=True).iterrows():
        k = int(row["n_context"])
        context = [cells[row_of[row[f"ctx{j}"]]] for j in range(k)]
        dts = [int(row[f"dt{j}"]) for j in range(k - 1)]
        query, dt_query = cells[row_of[row["query"]]], int(row["dt_query"])
        ex = enc.encode(context, dts, task=row["task"], query=query, dt_query=dt_query)
        expected = ex["input_ids"].tolist()
        if row["task"] == "TimeBetweenCells":
            expected.append(enc.time_token(dt_query))
        got = ds[i]
        assert got["input_ids"] == expected, f"prompt {i}"
        assert got["response_len"] == len(expected) - ex["eoq_pos"] - 1
        assert official_task(got["input_ids"], vocab) == row["task"] == got["task"]
        assert got["timesteps"] == [*dts, dt_query]


def test_max_length_holds_prompt_and_answer(atlas, tmp_path):
    adata, vocab, prompts = atlas
    cells = ArrayTokens(
        adata.obsm["maxtoki_tokens"], adata.obs["maxtoki_n_tokens"], names=adata.obs_names
    )
    data = PromptDataset(prompts, cells, vocab=vocab, max_length=80, max_genes_per_cell=20)
    ds = data.to_hf_dataset(cache_dir=str(tmp_path))
    assert max(len(x) for x in ds["input_ids"]) == 80  # some prompts were cut, none is longer
    for i in range(len(ds)):
        ids = ds[i]["input_ids"]
        if ds[i]["task"] == "TimeBetweenCells":  # the prompt fits 79 tokens, the answer follows
            assert ids[-2] == vocab.eoq_id
            assert ids[-1] == vocab.time_token_id(ds[i]["timesteps"][-1])
        else:  # the answer is part of the encoder's fit
            assert ids == data[i]["input_ids"].tolist()


def test_clear_errors(tmp_path):
    data = PromptDataset(table(), tokens(), vocab=VOCAB)
    with pytest.raises(ValueError, match=r"keys \['age'\] are not columns of the prompt table"):
        data.to_hf_dataset(keys=["age"], cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"name an exported column"):
        data.to_hf_dataset(keys=["task"], cache_dir=str(tmp_path))
    tight = PromptDataset(table(), tokens(), vocab=VOCAB, max_length=12, truncate=False)
    with pytest.raises(ValueError, match=r"prompt 0: .*max_length is 11 \(truncation is off\)"):
        tight.to_hf_dataset(cache_dir=str(tmp_path))


def test_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install datasets"):
        PromptDataset(table(), tokens(), vocab=VOCAB).to_hf_dataset()
