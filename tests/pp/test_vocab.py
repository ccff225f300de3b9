import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maxtoki.pp import GeneVocab

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "maxtoki"
needs_ref = pytest.mark.skipif(
    not REF.is_dir(), reason=f"official reference files not found at {REF} (shared/reference)"
)


@pytest.fixture(scope="module")
def official():
    return GeneVocab.from_files(
        REF / "token_dictionary_v1.json", REF / "gene_median_dictionary_v1.json"
    )


@pytest.fixture(scope="module")
def temporal():
    return GeneVocab.from_files(
        REF / "token_dictionary_temporal_v1.json", REF / "gene_median_dictionary_v1.json"
    )


@needs_ref
def test_official_vocabulary(official):
    assert len(official) == 20_275
    assert official.n_genes == 20_271
    assert official.tokens[:4] == ("<pad>", "<mask>", "<bos>", "<eos>")
    assert (official.pad_id, official.mask_id, official.bos_id, official.eos_id) == (0, 1, 2, 3)
    assert official.gene_token_ids[0] == 4 and official.gene_token_ids[-1] == 20_274
    assert len(official.gene_ids) == 20_271 and official.gene_ids[0].startswith("ENSG")
    assert not official.has_time_tokens and official.boq_id is None
    med = official.median_per_token
    assert med.dtype == np.float64 and med.shape == (20_275,)
    assert np.isnan(med[:4]).all() and np.isfinite(med[4:]).all() and (med[4:] > 0).all()
    medians = json.loads((REF / "gene_median_dictionary_v1.json").read_text())
    g = official.gene_ids[100]
    assert med[official.token_to_id[g]] == medians[g]
    with pytest.raises(ValueError, match="no time tokens"):
        official.time_token_id(0)


@needs_ref
def test_temporal_vocabulary(temporal, official):
    assert len(temporal) == 23_277
    assert temporal.n_genes == 20_271
    assert temporal.time_range == (-1500, 1499)
    assert temporal.time_token_start_id == 20_275
    for months in (-1500, -1, 0, 1, 240, 1499):
        assert temporal.time_token_id(months) == 21_775 + months
        assert temporal.tokens[21_775 + months] == str(months)
    np.testing.assert_array_equal(temporal.time_token_id(np.array([0, 12])), [21_775, 21_787])
    assert temporal.boq_id == 23_275 and temporal.eoq_id == 23_276
    # the gene part is the 217M vocabulary, token for token
    assert temporal.tokens[: len(official)] == official.tokens
    with pytest.raises(ValueError, match="range"):
        temporal.time_token_id(1500)
    fields = temporal.model_config_fields()
    assert fields["vocab_size"] == 23_277 and fields["boq_token_id"] == 23_275
    assert fields["time_token_start_id"] == 20_275 and fields["n_time_tokens"] == 3000


@needs_ref
def test_hash_stable_and_distinct(official, temporal):
    again = GeneVocab.from_files(
        REF / "token_dictionary_v1.json", REF / "gene_median_dictionary_v1.json"
    )
    assert again.hash == official.hash
    assert len(official.hash) == 16 and int(official.hash, 16) >= 0
    assert temporal.hash != official.hash
    changed = dict(official.gene_medians)
    changed[official.gene_ids[0]] *= 2
    assert GeneVocab(official.tokens, changed).hash != official.hash


@needs_ref
def test_save_load_round_trip(tmp_path, temporal):
    temporal.save(tmp_path / "vocab")
    back = GeneVocab.load(tmp_path / "vocab")
    assert back.tokens == temporal.tokens
    assert back.hash == temporal.hash
    np.testing.assert_array_equal(
        back.median_per_token[4:20_275], temporal.median_per_token[4:20_275]
    )
    assert back.time_range == temporal.time_range


def test_from_genes_and_time_tokens(tmp_path):
    med = pd.Series({"ENSG00000000003": 2.0, "ENSG00000000005": 0.5, "ENSG00000000419": 1.5})
    v = GeneVocab.from_genes(med, time_range=None)
    assert len(v) == 7 and v.token_to_id["ENSG00000000005"] == 5
    assert v.median_per_token[6] == 1.5
    t = v.with_time_tokens((-2, 2))
    assert len(t) == 7 + 5 + 2 and t.time_token_id(-2) == 7 and t.eoq_id == len(t) - 1
    assert GeneVocab.from_genes(med).time_range == (-1500, 1499)
    t.save(tmp_path)
    assert GeneVocab.load(tmp_path).hash == t.hash


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_bad_files(tmp_path):
    meds = _write(tmp_path / "med.json", {"ENSG00000000003": 1.0})
    good = {"<pad>": 0, "<mask>": 1, "<bos>": 2, "<eos>": 3, "ENSG00000000003": 4}
    assert len(GeneVocab.from_files(_write(tmp_path / "t.json", good), meds)) == 5
    with pytest.raises(ValueError, match="does not exist"):
        GeneVocab.from_files(tmp_path / "missing.json", meds)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        GeneVocab.from_files(tmp_path / "broken.json", meds)
    with pytest.raises(ValueError, match="token ids"):
        GeneVocab.from_files(_write(tmp_path / "gap.json", {**good, "ENSG00000000005": 9}), meds)
    with pytest.raises(ValueError, match="starts with"):
        GeneVocab.from_files(
            _write(tmp_path / "sp.json", {"<mask>": 0, "<pad>": 1, "<bos>": 2, "<eos>": 3}), meds
        )
    with pytest.raises(ValueError, match="no median"):
        GeneVocab.from_files(_write(tmp_path / "nm.json", {**good, "ENSG00000000005": 5}), meds)
    with pytest.raises(ValueError, match="integer id"):
        GeneVocab.from_files(_write(tmp_path / "str.json", {**good, "ENSG00000000003": "4"}), meds)
    with pytest.raises(ValueError, match="finite and > 0"):
        GeneVocab.from_genes({"ENSG00000000003": 0.0})


def test_token_list_read_by_position_warns(tmp_path):
    meds = _write(tmp_path / "med.json", {"ENSG00000000003": 1.0, "ENSG00000000005": 2.0})
    tokens = ["<pad>", "<mask>", "<bos>", "<eos>", "ENSG00000000003", "ENSG00000000005"]
    as_map = GeneVocab.from_files(
        _write(tmp_path / "map.json", {t: i for i, t in enumerate(tokens)}), meds
    )
    with pytest.warns(UserWarning, match="assigned by position") as record:
        as_list = GeneVocab.from_files(_write(tmp_path / "list.json", tokens), meds)
    assert "shifts every gene id" in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller
    assert as_list.tokens == as_map.tokens and as_list.hash == as_map.hash


def test_token_list_without_specials_is_refused(tmp_path):
    meds = _write(tmp_path / "med.json", {"ENSG00000000003": 1.0, "ENSG00000000005": 2.0})
    # the checkpoint pitfall: a list that lacks <pad> puts every gene one id too low
    shifted = ["<mask>", "<bos>", "<eos>", "ENSG00000000003", "ENSG00000000005"]
    with pytest.raises(ValueError, match="one-off shift") as e:
        GeneVocab.from_files(_write(tmp_path / "shifted.json", shifted), meds)
    assert "['<pad>']" in str(e.value) and "GeneVocab.official()" in str(e.value)
    genes_only = ["ENSG00000000003", "ENSG00000000005"]
    with pytest.raises(ValueError, match="JSON list of tokens"):
        GeneVocab.from_files(_write(tmp_path / "genes.json", genes_only), meds)
    with pytest.raises(ValueError, match="token strings"):
        GeneVocab.from_files(_write(tmp_path / "ints.json", [0, 1, 2, 3]), meds)
    dup = ["<pad>", "<mask>", "<bos>", "<eos>", "ENSG00000000003", "ENSG00000000003"]
    with pytest.raises(ValueError, match="duplicated"):
        GeneVocab.from_files(_write(tmp_path / "dup.json", dup), meds)


# --- the official vocabulary shipped with the package (maxtoki/_data) ------------------------
# sha256 of the released JSON files, as listed in maxtoki/_data/README.md
OFFICIAL_SHA256 = {
    "token_dictionary_v1.json": "b4577f7a983ae1878e1c5db8862ccb46987e904bc2759bd305960fbb838ccb15",
    "gene_median_dictionary_v1.json": (
        "8ced5c2b1e5e6d3310128c627b3dc98f2a9d1f397bb6f30103d78d40360abec5"
    ),
}


def packaged_bytes(name):
    return gzip.decompress((resources.files("maxtoki") / "_data" / f"{name}.gz").read_bytes())


def test_packaged_files_are_the_released_bytes():
    """Runs in every clone: the shipped files hash to the released files' sha256."""
    for name, sha in OFFICIAL_SHA256.items():
        assert hashlib.sha256(packaged_bytes(name)).hexdigest() == sha, name
    medians = json.loads(packaged_bytes("gene_median_dictionary_v1.json"))
    assert len(medians) == 42_005


def test_official_vocab_without_reference_files():
    v = GeneVocab.official()
    assert GeneVocab.official() is v  # loaded once
    assert len(v) == 20_275 and v.n_genes == 20_271
    assert v.tokens[:4] == ("<pad>", "<mask>", "<bos>", "<eos>")
    assert v.gene_token_ids[0] == 4 and v.gene_token_ids[-1] == 20_274
    assert not v.has_time_tokens and v.boq_id is None and v.eoq_id is None
    med = v.median_per_token
    assert np.isfinite(med[4:]).all() and (med[4:] > 0).all()

    t = GeneVocab.official(temporal=True)
    assert GeneVocab.official(temporal=True) is t
    assert len(t) == 23_277 and t.n_genes == 20_271
    assert t.tokens[:20_275] == v.tokens
    assert t.time_range == (-1500, 1499) and t.time_token_start_id == 20_275
    assert t.time_token_id(0) == 21_775 and t.time_token_id(-1500) == 20_275
    assert t.time_token_id(1499) == 23_274
    assert t.boq_id == 23_275 and t.eoq_id == 23_276
    assert t.tokens[-2:] == ("<boq>", "<eoq>")
    # the gene mask: genes only, never special, time or query tokens; read-only (it is shared)
    mask = t.is_gene_token
    assert mask.shape == (23_277,) and mask.sum() == 20_271
    assert np.array_equal(np.flatnonzero(mask), t.gene_token_ids)
    assert not mask[[0, 1, 2, 3, 20_275, 23_274, 23_275, 23_276]].any()
    with pytest.raises(ValueError, match="read-only"):
        mask[0] = True
    # tokens of either vocabulary serve models of both
    assert t.encoding_hash == v.encoding_hash and t.hash != v.hash
    fields = t.model_config_fields()
    assert fields["vocab_size"] == 23_277 and fields["n_time_tokens"] == 3000


@needs_ref
def test_official_equals_the_released_files(official, temporal):
    for shipped, released in (
        (GeneVocab.official(), official),
        (GeneVocab.official(temporal=True), temporal),
    ):
        assert shipped.tokens == released.tokens  # token for token, id for id
        assert shipped.token_to_id == released.token_to_id
        assert shipped.gene_medians.keys() == released.gene_medians.keys()
        assert all(shipped.gene_medians[g] == released.gene_medians[g] for g in released.gene_ids)
        np.testing.assert_array_equal(shipped.median_per_token, released.median_per_token)
        assert shipped.hash == released.hash
        assert shipped.encoding_hash == released.encoding_hash
    # the temporal vocabulary is rebuilt (not stored): the released file, token for token
    mapping = json.loads((REF / "token_dictionary_temporal_v1.json").read_text())
    assert len(mapping) == 23_277
    assert GeneVocab.official(temporal=True).token_to_id == mapping
    assert list(GeneVocab.official(temporal=True).token_to_id.items()) == sorted(
        mapping.items(), key=lambda kv: kv[1]
    )


@needs_ref
def test_packaged_files_equal_the_released_files():
    for name in OFFICIAL_SHA256:
        released = (REF / name).read_bytes()
        assert packaged_bytes(name) == released, name
    medians = json.loads((REF / "gene_median_dictionary_v1.json").read_text())
    packaged = json.loads(packaged_bytes("gene_median_dictionary_v1.json"))
    assert len(packaged) == len(medians) == 42_005
    assert list(packaged.items()) == list(medians.items())  # entry for entry, in order
    tokens = json.loads((REF / "token_dictionary_v1.json").read_text())
    assert json.loads(packaged_bytes("token_dictionary_v1.json")) == tokens
