"""The model carries its vocabulary: checked against the config, saved, loaded, grown."""

import numpy as np
import pytest
import torch

import maxtoki as mt
from maxtoki.models import Collator, MaxToki, MaxTokiConfig
from maxtoki.pp import GeneVocab

SIZES = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
GENES = {f"ENSG{i:011d}": 1.0 + i / 10 for i in range(30)}
STAGE1 = GeneVocab.from_genes(GENES, time_range=None)
TEMPORAL = STAGE1.with_time_tokens((-10, 9))


def _model(vocab: GeneVocab, **overrides) -> MaxToki:
    torch.manual_seed(0)
    config = MaxTokiConfig(**{**SIZES, **vocab.model_config_fields(), **overrides})
    return MaxToki(config, vocab=vocab)


def test_save_and_load_keep_the_vocabulary(tmp_path, capsys):
    model = _model(TEMPORAL)
    assert model.vocab is TEMPORAL
    model.save_pretrained(tmp_path)
    assert (tmp_path / "token_dictionary.json").is_file()
    assert (tmp_path / "gene_median_dictionary.json").is_file()
    loaded = MaxToki.from_pretrained(tmp_path, device="cpu")
    assert loaded.vocab.hash == TEMPORAL.hash
    assert loaded.vocab.time_range == (-10, 9)
    assert "its vocabulary" in capsys.readouterr().err


def test_a_model_without_vocabulary_loads_without_one(tmp_path, capsys):
    model = _model(STAGE1)
    model.vocab = None
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "token_dictionary.json").exists()
    loaded = MaxToki.from_pretrained(tmp_path, device="cpu")
    assert loaded.vocab is None
    assert "no vocabulary" in capsys.readouterr().err


def test_a_mismatching_vocabulary_raises_naming_every_field():
    model = _model(STAGE1)
    with pytest.raises(ValueError, match="vocab_size") as error:
        model.vocab = TEMPORAL
    for field in ("time_token_start_id", "boq_token_id", "eoq_token_id"):
        assert field in str(error.value)
    assert model.vocab is STAGE1  # unchanged
    with pytest.raises(ValueError, match=r"bos_token_id \(config 1, vocabulary 2\)"):
        MaxToki(
            MaxTokiConfig(**{**SIZES, **STAGE1.model_config_fields(), "bos_token_id": 1}), STAGE1
        )
    other_range = STAGE1.with_time_tokens((-5, 14))  # same size, other months
    with pytest.raises(ValueError, match="time_min_months") as error:
        _model(TEMPORAL).vocab = other_range
    assert "n_time_tokens" not in str(error.value)
    with pytest.raises(TypeError, match="GeneVocab"):
        model.vocab = {"<pad>": 0}


def test_a_mismatching_vocabulary_file_is_refused_on_load(tmp_path):
    _model(TEMPORAL).save_pretrained(tmp_path)
    other = GeneVocab.from_genes(GENES, time_range=(-20, -1))  # same size, other months
    other.save(tmp_path)
    with pytest.raises(ValueError, match="time_min_months"):
        MaxToki.from_pretrained(tmp_path, device="cpu")
    (tmp_path / "gene_median_dictionary.json").unlink()
    with pytest.raises(ValueError, match="gene median dictionary"):
        MaxToki.from_pretrained(tmp_path, device="cpu")


def test_resize_to_the_temporal_layout_extends_the_vocabulary(capsys):
    model = _model(STAGE1, n_time_tokens=20, time_min_months=-10)
    model.resize_token_embeddings(len(STAGE1) + 22, random_state=0)
    assert model.config.time_token_start_id == len(STAGE1)
    assert model.vocab.hash == TEMPORAL.hash
    assert model.vocab.time_token_id(-10) == model.config.time_token_id(-10)


def test_any_other_resize_drops_the_vocabulary(capsys):
    model = _model(TEMPORAL)
    model.resize_token_embeddings(len(TEMPORAL) + 3, random_state=0)
    assert model.vocab is None
    assert "model.vocab is now None" in capsys.readouterr().err
    stage1 = _model(STAGE1)
    stage1.resize_token_embeddings(len(STAGE1) + 5, random_state=0)  # not the temporal layout
    assert stage1.vocab is None and not stage1.config.has_time_tokens


def test_build_model_and_trainer_attach_the_vocabulary(tmp_path):
    model = mt.train.build_model("tiny", vocab=TEMPORAL, overrides=SIZES)
    assert model.vocab is TEMPORAL
    model.save_pretrained(tmp_path)
    # a loaded model keeps its own vocabulary when the given one agrees with it
    again = GeneVocab.load(tmp_path)
    loaded = mt.train.build_model(str(tmp_path), vocab=again)
    assert loaded.vocab.hash == TEMPORAL.hash
    # … and refuses one that disagrees in its genes or medians
    shifted = GeneVocab.from_genes({g: m * 2 for g, m in GENES.items()}, time_range=(-10, 9))
    with pytest.raises(ValueError, match="disagrees with the given one"):
        mt.train.build_model(str(tmp_path), vocab=shifted)

    bare = mt.train.build_model("tiny", overrides={**SIZES, **TEMPORAL.model_config_fields()})
    assert bare.vocab is None
    mt.train.Trainer(bare, [], None, mt.train.TrainConfig(quiet=True), vocab=TEMPORAL)
    assert bare.vocab is TEMPORAL
    stage1 = _model(STAGE1)
    stage1.vocab = None
    with pytest.raises(ValueError, match="vocab_size"):
        mt.train.Trainer(stage1, [], None, mt.train.TrainConfig(quiet=True), vocab=TEMPORAL)


def test_blocks_are_the_decoder_layers():
    model = _model(STAGE1)
    assert model.blocks() is model.model.layers
    assert len(model.blocks()) == model.config.num_hidden_layers


def _example(ids):
    ids = np.asarray(ids)
    return {
        "input_ids": ids,
        "labels": np.full(len(ids), -100),
        "eoq_pos": -1,
        "time_target": float("nan"),
        "task": 2,
    }


def test_collator_checks_ids_on_the_host():
    collate = Collator(vocab_size=10)
    batch = collate([_example([2, 4, 9, 3]), _example([2, 5, 3])])
    assert batch["input_ids"].shape == (2, 4)
    with pytest.raises(ValueError, match=r"example 1 has token ids in \[2, 10\].*\[0, 10\)"):
        collate([_example([2, 4, 3]), _example([2, 10, 3])])
    with pytest.raises(ValueError, match=r"example 0 has token ids in \[-1, 3\]"):
        Collator()([_example([2, -1, 3])])
    with pytest.raises(ValueError, match="integer token ids"):
        collate([_example([2.0, 4.5, 3.0])])
    with pytest.raises(TypeError, match="vocab_size"):
        Collator(vocab_size="10")
    assert mt.train.Collator is Collator
