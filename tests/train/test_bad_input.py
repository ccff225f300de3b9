"""Bad input to mt.models and mt.train: clear errors that name the fix, input unchanged."""

from __future__ import annotations

import copy

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# models and train -----------------------------------------------------------------------------
T = "models.MaxToki"
case(
    T,
    "from_pretrained-missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: mt.models.MaxToki.from_pretrained(p),
    FileNotFoundError,
    r"is not a folder; expected a model folder with config\.json",
)
case(
    T,
    "from_pretrained-a-file",
    lambda: fx().path,
    lambda p: mt.models.MaxToki.from_pretrained(p),
    FileNotFoundError,
    r"is not a folder; expected a model folder with config\.json",
)
case(
    T,
    "from_pretrained-subfolder-outside",
    lambda: tmp_root(),
    lambda p: mt.models.MaxToki.from_pretrained(p, subfolder="../elsewhere"),
    ValueError,
    r"subfolder='\.\./elsewhere' must be a relative path inside the model folder or repo",
)
case(
    T,
    "from_pretrained-revision-of-a-local-folder",
    lambda: tmp_root(),
    lambda p: mt.models.MaxToki.from_pretrained(p, revision="v1"),
    ValueError,
    r"revision='v1' applies to Hub repos, but .* is a local folder; drop `revision=`",
)
case(
    T,
    "from_pretrained-bad-hub-repo-id",  # refused before any network access
    lambda: "not a repo!",
    lambda p: mt.models.MaxToki.from_pretrained(p, local_files_only=True),
    ValueError,
    r"'not a repo!' is neither a local folder nor a valid Hugging Face Hub repo id",
)
case(
    T,
    "config-a-str",
    lambda: "tiny",
    lambda c: mt.models.MaxToki(c),
    TypeError,
    r"config must be a MaxTokiConfig",
)
case(
    T,
    "prompt-ids-outside-vocab",  # the forward pass does not check ids (no host sync): generate does
    lambda: None,
    lambda _: M().generate([__import__("torch").tensor([2, 99999, 3])], max_new_tokens=1),
    match=r"outside|vocab",
)
case(
    T,
    "generate-temperature-negative",
    lambda: None,
    lambda _: M().generate(
        [__import__("torch").tensor([2, 5, 3])], max_new_tokens=2, temperature=-1.0
    ),
    match=r"temperature",
)
T = "models.MaxTokiConfig"
case(
    T,
    "preset-unknown",
    lambda: "huge",
    lambda n: mt.models.MaxTokiConfig.preset(n),
    match=r"unknown preset 'huge'; choose one of",
)
case(
    T,
    "hidden_size-negative",
    lambda: None,
    lambda _: mt.models.MaxTokiConfig.preset("tiny", hidden_size=-1),
    match=r"hidden_size must be >= 1",
)
case(
    T,
    "hidden_size-str",
    lambda: None,
    lambda _: mt.models.MaxTokiConfig.preset("tiny", hidden_size="64"),
    TypeError,
    r"hidden_size must be an int",
)
works(
    T,
    "from_dict-extra-HF-field",
    lambda: {"hidden_size": 64, "model_type": "llama"},
    lambda d: mt.models.MaxTokiConfig.from_dict(d),
    unchanged=True,
)  # HF configs carry more
T = "train.TrainConfig"
case(
    T,
    "unknown-field",
    lambda: {"learning_rate": 1.0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"learning_rate",
)
case(
    T, "lr-negative", lambda: {"lr": -1.0}, lambda d: mt.train.TrainConfig.from_dict(d), match=r"lr"
)
case(
    T,
    "micro_batch_size-0",
    lambda: {"micro_batch_size": 0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"micro_batch_size",
)
case(
    T,
    "steps-str",
    lambda: {"steps": "10"},
    lambda d: mt.train.TrainConfig.from_dict(d),
    (ValueError, TypeError),
    r"steps",
)
case(
    T,
    "tracker-unknown",
    lambda: {"tracker": "wandb"},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"tracker must be one of \['none', 'tensorboard', 'mlflow'\]",
)
case(
    T,
    "tensorboard-without-out_dir",
    lambda: {"tracker": "tensorboard"},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"set out_dir|pip install 'maxtoki\[tensorboard\]'",
)
case(
    T,
    "early_stopping_patience-0",
    lambda: {"early_stopping_patience": 0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"early_stopping_patience must be >= 1 or None",
)
case(
    T,
    "early_stopping_min_delta-negative",
    lambda: {"early_stopping_min_delta": -1.0},
    lambda d: mt.train.TrainConfig.from_dict(d),
    match=r"early_stopping_min_delta must be >= 0",
)
T = "train.build_model"
case(
    T,
    "model-int",
    lambda: 42,
    lambda m: mt.train.build_model(m),
    TypeError,
    r"model must be a preset name, a model folder or a MaxToki",
)
case(
    T,
    "model-of-another-vocab",
    lambda: None,
    lambda _: mt.train.build_model(copy.deepcopy(fx().model), vocab=fx().genes_only),
    match=r"the model has 3206 tokens but the vocabulary has 204",
)
case(
    T,
    "stage-1-model-with-a-foreign-temporal-vocab",
    lambda: None,
    lambda _: mt.train.build_model(copy.deepcopy(fx().model_genes_only), vocab=fx().foreign),
    match=r"no time tokens; the vocabulary \(\d+ tokens\) is not its temporal extension",
)
T = "train.read_prompts"
case(
    T,
    "missing-file",
    lambda: tmp_root() / "nope.csv",
    lambda p: mt.train.read_prompts(p),
    FileNotFoundError,
    r"nope\.csv.* not found; write one with `mt\.pp\.trajectories",
)


@pytest.mark.parametrize("c", cases_of("models") + cases_of("train"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)

