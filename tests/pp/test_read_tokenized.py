"""mt.pp.read_tokenized: official tokenized datasets (Hugging Face ``datasets``) → tokens.

The dataset is built the way the official ``TranscriptomeTokenizer`` writes one
(``data_prep/transcriptome_tokenizer.py``, ``create_dataset``): a ``Dataset.from_dict`` of the
ranked gene ids and the metadata columns (``time``, ``unique_cell_id``, ``time_group`` and a
custom attribute; ``counts`` with ``keep_counts=True``), then a ``map`` that truncates to
``model_input_size - 2`` genes, wraps them as ``<bos> … <eos>`` (``counts`` padded with 0.0) and
adds ``length``; saved with ``save_to_disk`` to ``<prefix>.dataset``. The cells are the real
golden PBMC cells, tokenized by ``mt.pp.tokenize`` with the packaged official vocabulary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import maxtoki as mt
from maxtoki._keys import read_tokens
from maxtoki.pp import GeneVocab, TokenStore

datasets = pytest.importorskip("datasets", reason="the optional `datasets` package is missing")

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN_H5AD = DATA / "golden_pbmc.h5ad"
MODEL_INPUT_SIZE = 4096
TYPES = ("T cell", "B cell", "monocyte")


def official_layout(cells: list[np.ndarray], meta: dict[str, list]) -> datasets.Dataset:
    """What ``TranscriptomeTokenizer.create_dataset`` builds (``keep_counts=True``)."""
    counts = [np.log1p(np.arange(len(c), 0, -1, dtype=np.float64)).tolist() for c in cells]
    ds = datasets.Dataset.from_dict(
        {"input_ids": [c.tolist() for c in cells], "counts": counts, **meta}
    )

    def format_cell_features(example):
        example["input_ids"] = [2, *example["input_ids"][: MODEL_INPUT_SIZE - 2], 3]
        example["counts"] = [0.0, *example["counts"][: MODEL_INPUT_SIZE - 2], 0.0]
        example["length"] = len(example["input_ids"])
        return example

    return ds.map(format_cell_features)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """``(tokenized AnnData, the official dataset's folder)`` of the golden PBMC cells."""
    adata = ad.read_h5ad(GOLDEN_H5AD)
    mt.pp.tokenize(adata, vocab=GeneVocab.official(), max_len=MODEL_INPUT_SIZE)
    T, L = adata.obsm["maxtoki_tokens"], adata.obs["maxtoki_n_tokens"].to_numpy()
    genes = [T[i, 1 : L[i] - 1].astype(np.int64) for i in range(adata.n_obs)]
    n = adata.n_obs
    meta = {
        "time": [int(12 * (i % 9)) for i in range(n)],  # the official tokenizer's time column
        "unique_cell_id": adata.obs["cell_id"].astype(str).tolist(),
        "time_group": [f"donor{i % 4}" for i in range(n)],
        "cell_type": [TYPES[i % 3] for i in range(n)],  # a custom attribute
    }
    path = tmp_path_factory.mktemp("official") / "pbmc.dataset"
    official_layout(genes, meta).save_to_disk(str(path))
    return adata, path


def cells_of(adata, key="maxtoki"):
    T, L = adata.obsm[f"{key}_tokens"], adata.obs[f"{key}_n_tokens"].to_numpy()
    return [T[i, : L[i]].astype(np.int64) for i in range(adata.n_obs)]


def test_the_dataset_has_the_official_layout(golden):
    _, path = golden
    ds = datasets.load_from_disk(str(path))
    assert set(ds.column_names) == {
        "input_ids", "counts", "time", "unique_cell_id", "time_group", "cell_type", "length"
    }  # fmt: skip
    row = ds[0]
    assert row["input_ids"][0] == 2 and row["input_ids"][-1] == 3
    assert row["length"] == len(row["input_ids"]) == len(row["counts"])


def test_read_into_anndata_token_for_token(golden):
    tokenized, path = golden
    adata = mt.pp.read_tokenized(path)
    np.testing.assert_array_equal(adata.obsm["maxtoki_tokens"], tokenized.obsm["maxtoki_tokens"])
    assert adata.obsm["maxtoki_tokens"].dtype == tokenized.obsm["maxtoki_tokens"].dtype
    np.testing.assert_array_equal(adata.obs["maxtoki_n_tokens"], tokenized.obs["maxtoki_n_tokens"])
    assert not adata.obs["maxtoki_empty"].any()
    # obs: the scalar columns (list columns and `length` are not obs), cells named by their ID
    assert adata.obs_names.tolist() == tokenized.obs["cell_id"].astype(str).tolist()
    assert [c for c in adata.obs.columns if not c.startswith("maxtoki_")] == [
        "time", "unique_cell_id", "time_group", "cell_type"
    ]  # fmt: skip
    assert adata.obs["time"].tolist() == [int(12 * (i % 9)) for i in range(adata.n_obs)]
    assert adata.obs["cell_type"].iloc[:3].tolist() == list(TYPES)
    # var: the vocabulary's genes, no counts
    vocab = GeneVocab.official()
    assert adata.X is None and adata.n_vars == vocab.n_genes
    assert adata.var_names.tolist() == vocab.gene_ids.tolist()
    np.testing.assert_array_equal(adata.var["maxtoki_token_id"], vocab.gene_token_ids)
    # every token consumer reads them, with the stage-1 and the temporal official vocabulary
    for v in (vocab, GeneVocab.official(temporal=True)):
        assert [c.tolist() for c in read_tokens(adata, "maxtoki_tokens", v).cells()] == [
            c.tolist() for c in cells_of(tokenized)
        ]
    record = adata.uns["maxtoki_tokens"]
    assert record["source"] == str(path.resolve()) and record["n_cells"] == adata.n_obs
    assert record["vocab_hash"] == vocab.hash


def test_anndata_survives_h5ad(golden, tmp_path):
    _, path = golden
    adata = mt.pp.read_tokenized(path, obs_keys=["time", "cell_type"], key_added="official")
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm["official_tokens"], adata.obsm["official_tokens"])
    assert list(back.obs.columns) == ["time", "cell_type", "official_n_tokens", "official_empty"]
    assert read_tokens(back, "official_tokens", GeneVocab.official()).lengths.min() > 2


def test_read_into_a_store(golden, tmp_path):
    tokenized, path = golden
    store = mt.pp.read_tokenized(path, out_dir=tmp_path / "store", chunk_size=64)
    assert isinstance(store, TokenStore) and store.complete
    assert len(store) == tokenized.n_obs and store.n_shards == 5
    expected = cells_of(tokenized)
    for i in range(len(store)):
        np.testing.assert_array_equal(store[i], expected[i])
    np.testing.assert_array_equal(store.lengths, tokenized.obs["maxtoki_n_tokens"])
    obs = store.obs
    assert obs.columns.tolist() == [
        "source_file", "obs_name", "time", "unique_cell_id", "time_group", "cell_type"
    ]  # fmt: skip
    assert (obs["source_file"] == str(path.resolve())).all()
    assert obs["obs_name"].tolist() == tokenized.obs["cell_id"].astype(str).tolist()
    assert obs["time_group"].iloc[:4].tolist() == [f"donor{i}" for i in range(4)]
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["params"]["source"] == "hf_dataset"
    assert manifest["vocab_hash"] == store.vocab.hash
    # the same call again resumes: nothing is rewritten
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "shards").iterdir()}
    again = mt.pp.read_tokenized(path, out_dir=tmp_path / "store", chunk_size=64)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "shards").iterdir()}
    assert before == after and len(again) == len(store)
    with pytest.raises(ValueError, match=r"another dataset, vocabulary or parameters"):
        mt.pp.read_tokenized(path, out_dir=tmp_path / "store", chunk_size=50)


def test_resume_after_a_crash(golden, tmp_path, monkeypatch):
    from maxtoki.pp import _read_tokenized as rt

    tokenized, path = golden
    real, calls = rt.write_shard, []

    def crashing(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[1])
        real(*args, **kw)

    monkeypatch.setattr(rt, "write_shard", crashing)
    with pytest.raises(KeyboardInterrupt):
        mt.pp.read_tokenized(path, out_dir=tmp_path / "s", chunk_size=100)
    monkeypatch.setattr(rt, "write_shard", real)
    assert not TokenStore(tmp_path / "s").complete and len(TokenStore(tmp_path / "s")) == 200
    store = mt.pp.read_tokenized(path, out_dir=tmp_path / "s", chunk_size=100)
    assert store.complete and len(store) == tokenized.n_obs
    assert [c.tolist() for c in store] == [c.tolist() for c in cells_of(tokenized)]


def test_bad_cells_leave_no_store(tmp_path):
    ds = datasets.Dataset.from_dict({"input_ids": [[2, 5, 3]] * 5 + [[2, 99_999, 3]]})
    with pytest.raises(ValueError, match=r"cell 5 holds token id 99999"):
        mt.pp.read_tokenized(ds, out_dir=tmp_path / "store", chunk_size=2)
    assert not (tmp_path / "store").exists()


def test_in_memory_filtered_and_chunked(golden):
    tokenized, path = golden
    ds = datasets.load_from_disk(str(path))
    keep = [i for i in range(len(ds)) if ds[i]["cell_type"] != "B cell"]
    sub = ds.select(keep)  # an indices mapping over the Arrow table
    whole = mt.pp.read_tokenized(sub, obs_names_key=None)
    for chunk_size in (1, 7, 1000):
        adata = mt.pp.read_tokenized(sub, obs_names_key=None, chunk_size=chunk_size)
        np.testing.assert_array_equal(adata.obsm["maxtoki_tokens"], whole.obsm["maxtoki_tokens"])
    assert whole.obs_names.tolist() == [str(i) for i in range(len(keep))]
    expected = cells_of(tokenized)
    assert [c.tolist() for c in cells_of(whole)] == [expected[i].tolist() for i in keep]
    assert whole.uns["maxtoki_tokens"]["source"] == "<in-memory datasets.Dataset>"


def test_class_labels_become_categories():
    features = datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "sex": datasets.ClassLabel(names=["female", "male"]),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"input_ids": [[2, 5, 3], [2, 6, 7, 3]], "sex": [1, 0]}, features=features
    )
    adata = mt.pp.read_tokenized(ds)
    assert isinstance(adata.obs["sex"].dtype, pd.CategoricalDtype)
    assert adata.obs["sex"].tolist() == ["male", "female"]


def test_round_trip_with_the_store_export(golden, tmp_path):
    tokenized, path = golden
    store = mt.pp.tokenize_corpus(
        [GOLDEN_H5AD], tmp_path / "corpus", vocab=GeneVocab.official(), obs_keys=["cell_id"]
    )
    ds = store.to_hf_dataset(cache_dir=str(tmp_path / "cache"))
    ds.save_to_disk(str(tmp_path / "exported.dataset"))
    back = mt.pp.read_tokenized(tmp_path / "exported.dataset", obs_names_key="cell_id")
    np.testing.assert_array_equal(back.obsm["maxtoki_tokens"], tokenized.obsm["maxtoki_tokens"])
    assert back.obs_names.tolist() == tokenized.obs["cell_id"].astype(str).tolist()
    assert "source_file" in back.obs.columns and "length" not in back.obs.columns
    # official dataset → store → official layout → the same cells again
    read = mt.pp.read_tokenized(path, out_dir=tmp_path / "store")
    again = mt.pp.read_tokenized(read.to_hf_dataset(cache_dir=str(tmp_path / "cache")),
                                 obs_keys=["time"], obs_names_key="obs_name")  # fmt: skip
    np.testing.assert_array_equal(again.obsm["maxtoki_tokens"], tokenized.obsm["maxtoki_tokens"])
    assert again.obs["time"].tolist() == [int(12 * (i % 9)) for i in range(again.n_obs)]


@pytest.mark.parametrize(
    ("cells", "vocab", "match"),
    [
        ([[2, 5, 3], [2, 30_000, 3]], None, r"cell 1 .* another token dictionary"),
        ([[2, 5, 3, 21_800, 2, 6, 3]], None, r"assembled prompt \(cell paragraph\) dataset"),
        ([[2, 5, 21_800, 3]], "temporal", r"holds '25' .*assembled prompt"),
        ([[2, 5, -1, 3]], None, r"never negative"),
        ([[2, 5, 3, 2, 6, 3]], None, r"a row holds several cells"),
        ([[2, 5, 1, 3]], None, r"masked tokens"),
        ([[5, 6, 7]], None, r"does not start with <bos> .*Geneformer's, without <bos>/<eos>"),
    ],
)
def test_refused_cells(cells, vocab, match):
    v = GeneVocab.official(temporal=True) if vocab == "temporal" else None
    with pytest.raises(ValueError, match=match):
        mt.pp.read_tokenized(datasets.Dataset.from_dict({"input_ids": cells}), vocab=v)


def test_refused_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; pass the folder"):
        mt.pp.read_tokenized(tmp_path / "missing.dataset")
    with pytest.raises(ValueError, match=r"no 'input_ids' column"):
        mt.pp.read_tokenized(datasets.Dataset.from_dict({"tokens": [[2, 5, 3]]}))
    with pytest.raises(ValueError, match=r"must hold lists of integer token ids"):
        mt.pp.read_tokenized(datasets.Dataset.from_dict({"input_ids": [[2.0, 5.5, 3.0]]}))
    with pytest.raises(ValueError, match=r"has no cells"):
        mt.pp.read_tokenized(datasets.Dataset.from_dict({"input_ids": [[2, 5, 3]]}).select([]))
    ds = datasets.Dataset.from_dict({"input_ids": [[2, 5, 3]], "obs_name": ["x"], "c": [[1]]})
    with pytest.raises(ValueError, match=r"clash with the token store's own obs columns"):
        mt.pp.read_tokenized(ds, out_dir=tmp_path / "s")
    with pytest.raises(ValueError, match=r"obs_keys \['c'\] are not one value per cell"):
        mt.pp.read_tokenized(ds, obs_keys=["c"])
    with pytest.raises(ValueError, match=r"obs_names_key 'name' is not a column"):
        mt.pp.read_tokenized(ds, obs_names_key="name")
    with pytest.raises(TypeError, match=r"out_dir must be a folder"):
        mt.pp.read_tokenized(ds, out_dir=3)


def test_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install datasets"):
        mt.pp.read_tokenized("somewhere.dataset")
