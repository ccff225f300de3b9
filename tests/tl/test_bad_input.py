"""Bad input to mt.tl: clear errors that name the fix, and the input left unchanged."""

from __future__ import annotations

import copy

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# tl: models and vocabularies ------------------------------------------------------------------
OTHER_SIZE = r"the model and the vocabulary disagree \(vocab_size.*pass the vocabulary the model"
NO_TIME = r"has no time tokens, so .* pass a temporal \(stage 2\) model"
NOT_A_MODEL = r"model must be a maxtoki\.models\.MaxToki, got \w+; load one with"
OTHER_TOKENS = r"made with vocabulary \w+, the model's is \w+; re-run `mt\.pp\.tokenize`"
MODEL_TOOLS = {  # tool → how it passes (model, vocab)
    "tl.embed": lambda d, m, v: mt.tl.embed(d, model=m, vocab=v, **FAST),
    "tl.predict_time": lambda d, m, v: mt.tl.predict_time(
        d, model=m, vocab=v, n_contexts=1, **FAST
    ),
    "tl.attention": lambda d, m, v: mt.tl.attention(d, model=m, vocab=v, n_cells=5, **FAST),
    "tl.generate": lambda d, m, v: mt.tl.generate(d, model=m, vocab=v, n_cells=2, **FAST),
    "tl.perturb": lambda d, m, v: mt.tl.perturb(
        d, model=m, vocab=v, genes=GENE0, n_cells=2, **FAST
    ),
    "tl.evaluate": lambda d, m, v: mt.tl.evaluate(d, model=m, vocab=v, n_cells=2, **FAST),
    "pl.explore": lambda d, m, v: mt.pl.explore(d, model=m, vocab=v, **FAST),
}
TEMPORAL = {"tl.predict_time", "tl.generate", "tl.perturb", "tl.evaluate", "pl.explore"}
for T, f in MODEL_TOOLS.items():
    case(T, "before-tokenize", raw, lambda d, f=f: f(d, M(), V()), match=TOKENIZE_FIRST)
    case(
        T,
        "tokens-of-another-vocab",
        lambda: fx().tok_other.copy(),
        lambda d, f=f: f(d, M(), V()),
        match=OTHER_TOKENS,
    )
    case(T, "model-None", tok, lambda d, f=f: f(d, None, V()), TypeError, NOT_A_MODEL)
    case(T, "model-a-preset-name", tok, lambda d, f=f: f(d, "tiny", V()), TypeError, NOT_A_MODEL)
    case(
        T,
        "vocab-dict",
        tok,
        lambda d, f=f: f(d, M(), {}),
        TypeError,
        r"vocab must be a maxtoki\.pp\.GeneVocab",
    )
    case(
        T,
        "model-of-another-size",
        tok,
        lambda d, f=f: f(d, fx().model_genes_only, V()),
        match=NO_TIME if T in TEMPORAL else OTHER_SIZE,
    )
    case(
        T,
        "vocab-of-another-size",
        tok,
        lambda d, f=f: f(d, M(), fx().genes_only),
        match=NO_TIME if T in TEMPORAL else OTHER_SIZE,
    )
    if T in TEMPORAL:
        case(
            T,
            "stage-1-model",
            lambda: fx().tok_genes_only.copy(),
            lambda d, f=f: f(d, fx().model_genes_only, fx().genes_only),
            match=NO_TIME,
        )

for T in (
    "tl.embed",
    "tl.predict_time",
    "tl.attention",
    "tl.generate",
    "tl.perturb",
    "tl.evaluate",
    "pl.explore",
):
    for bad in (0, -3, "8"):
        case(
            T,
            f"max_genes={bad!r}",
            tok,
            call(T, max_genes=bad),
            match=r"max_genes must be a "
            r"positive integer",
        )
for T in (
    "tl.embed",
    "tl.predict_time",
    "tl.attention",
    "tl.generate",
    "tl.perturb",
    "tl.evaluate",
):
    case(T, "batch_size-0", tok, call(T, batch_size=0), match=r"batch_size must be a positive")
    case(T, "batch_size-str", tok, call(T, batch_size="8"), match=r"batch_size must be a positive")

# tl.embed -----------------------------------------------------------------------------------
T = "tl.embed"
case(T, "emb_layer-out-of-range", tok, call(T, emb_layer=5), match=r"emb_layer must be an index in")
case(T, "emb_layer-str", tok, call(T, emb_layer="1"), match=r"emb_layer must be 'last', 'penult")
case(T, "emb_layer-negative", tok, call(T, emb_layer=-1), match=r"negative indices mean different")
case(T, "emb_mode-unknown", tok, call(T, emb_mode="max"), match=r"emb_mode must be 'cell' or 'eos'")
case(
    T,
    "cell-without-vocab-genes",
    lambda: tokenized_with(zero_first_cell),
    call(T),
    match=r"have no vocabulary gene .* remove them .* or use emb_mode='eos'",
)
works(T, "duplicated-obs-names", lambda: dup_obs_names(tok()), call(T))
works(T, "backed", lambda: backed("tok"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.predict_time ----------------------------------------------------------------------------
T = "tl.predict_time"
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no reference cells: obs\['condition'\] has no value in \['healthy'\]; pass `referen",
)
case(
    T,
    "groupby-unknown",
    tok,
    call(T, groupby="tissue"),
    match=r"groupby columns \['tissue'\] are not in the obs of the context; pass existing columns",
)
case(
    T,
    "time_key-missing",
    tok,
    call(T, time_key="age"),
    match=r"obs has no column 'age': pass `time_key=`",
)
case(
    T,
    "time_key-not-numeric",
    tok,
    call(T, time_key="cell_type"),
    match=r"obs\['cell_type'\] .* must be numeric months.* pass `time_key=`",
)
for bad in (0, -1, "5", 2.5):
    case(T, f"n_contexts={bad!r}", tok, call(T, n_contexts=bad), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(T, "aggregate-unknown", tok, call(T, aggregate="max"), match=r"aggregate must be 'median'")
CALIBRATE = r"calibrate must be True or False, got 'yes'"
case(T, "calibrate-a-string", tok, call(T, calibrate="yes"), TypeError, CALIBRATE)
case(T, "context-list", tok, call(T, context=[1, 2]), TypeError, TYPE_MSG)
case(T, "context-not-tokenized", tok, call_with(T, context=lambda: fx().raw), match=TOKENIZE_FIRST)
case(
    T,
    "context-lacks-groups",
    tok,
    call_with(T, context=lambda: one_type(fx().tok)),
    match=r"no reference cells for the group\(s\) .* pass a `context` with cells of these groups",
)
case(
    T,
    "context-without-ages",
    tok,
    call_with(T, context=lambda: with_obs(fx().tok.copy(), age_months=np.nan)),
    match=r"no reference cell has a known obs\['age_months'\]; pass a `context` with ages",
)
case(
    T,
    "one-donor-per-group",
    lambda: with_obs(tok(), donor="D0"),
    call(T),
    match=r"no reference cells outside donor 'D0'.* pass `donor_key=None`",
)
case(
    T,
    "ages-beyond-time-tokens",
    lambda: with_obs(tok(), age_months=lambda o: o.age_months * 100),
    call(T),
    match=r"not a whole number within the time tokens \[-1500, 1499\]; ages must be in months",
)
works(
    T,
    "string-obs-columns",
    lambda: as_strings(tok(), "condition", "cell_type", "sex", "donor"),
    call(T),
)
works(T, "categorical-ages", lambda: as_categories(tok(), "age_months"), call(T))
works(T, "duplicated-obs-names", lambda: dup_obs_names(tok()), call(T))
works(T, "backed", lambda: backed("tok"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.age_acceleration ------------------------------------------------------------------------
T = "tl.age_acceleration"
case(T, "method-unknown", done, call(T, method="query_swap"), match=r"method must be 'donor' or")
case(T, "calibrate-a-string", done, call(T, calibrate="yes"), TypeError, CALIBRATE)
case(T, "paired-without-model", done, call(T, method="paired"), match=r"pass `model=`")
case(
    T,
    "paired-stage-1-model",
    done,
    call_with(T, method="paired", model=lambda: fx().model_genes_only),
    match=NO_TIME,
)
works(
    T,
    "paired",
    done,
    call_with(T, method="paired", model=M, n_contexts=1, age_match=600, **FAST),
    check=lambda d, _: set(d.uns["maxtoki_age_acceleration"]["table"]["method"]) == {"paired"},
)
case(
    T,
    "before-predict_time",
    tok,
    call(T),
    match=r"obs has no column 'maxtoki_age': run `mt\.tl\.predict_time` first",
)
case(
    T,
    "groupby-unknown",
    done,
    call(T, groupby="disease"),
    match=r"obs has no column 'disease': pass `groupby=`",
)
case(
    T,
    "reference-not-present",
    done,
    call(T, reference="healthy"),
    match=r"reference 'healthy' is not a value of obs\['condition'\] .*; pass `reference=`",
)
case(
    T,
    "groups-not-present",
    done,
    call(T, groups=["flu"]),
    match=r"groups \['flu'\] are not values of obs\['condition'\]; pass `groups=`",
)
case(
    T,
    "only-the-reference",
    lambda: with_obs(done(), condition="control"),
    call(T),
    match=r"has no group besides the reference 'control'",
)
case(T, "adjust-unknown", done, call(T, adjust="quadratic"), match=r"adjust must be 'linear'")
for bad in (0, -5, "10"):
    case(T, f"n_boot={bad!r}", done, call(T, n_boot=bad), match=r"n_boot " + NOT_INT)
for bad in (1.5, 0, "0.9"):
    case(T, f"ci={bad!r}", done, call(T, ci=bad), match=r"ci must (be a number|lie) in \(0, 1\)")
for bad in (-1, "x", np.inf):
    case(
        T,
        f"age_match={bad!r}",
        done,
        call(T, age_match=bad),
        match=r"age_match must be a non-negative number of months or None",
    )
case(
    T,
    "stratify_by-unknown",
    done,
    call(T, stratify_by="tissue"),
    match=r"obs has no column 'tissue': pass an existing obs column as `stratify_by`",
)
case(
    T,
    "donor_key-unknown",
    done,
    call(T, donor_key="patient"),
    match=r"obs has no column 'patient': pass `donor_key=`",
)
case(
    T,
    "predictions-all-NaN",
    lambda: with_obs(done(), maxtoki_age=np.nan),
    call(T),
    match=r"no cell of the groups .*no finite obs\['maxtoki_age'\].*; run `mt\.tl\.predict_time`",
)
case(
    T,
    "predictions-not-numeric",
    done,
    call(T, predicted_key="cell_type"),
    match=r"obs\['cell_type'\] .* numeric",
)
works(T, "string-obs-columns", lambda: as_strings(done(), "condition", "donor"), call(T))
works(T, "stratified", done, call(T, stratify_by="cell_type"))
works(T, "duplicated-obs-names", lambda: dup_obs_names(done()), call(T))
works(T, "MuData", lambda: mudata_of(done()), call(T))
unchanged_copy(T)

# tl.attention -------------------------------------------------------------------------------
T = "tl.attention"
case(
    T,
    "gene_set-column-missing",
    tok,
    call(T, gene_set="tf"),
    match=r"var has no column 'tf'; pass a boolean var column as `gene_set`",
)
case(
    T,
    "gene_set-not-boolean",
    tok,
    call(T, gene_set="gene_kind"),
    match=r"var\['gene_kind'\] must be boolean to serve as `gene_set`",
)
case(
    T,
    "gene_set-unknown-names",
    tok,
    call(T, gene_set=["NOPE1"]),
    match=r"gene_set names \['NOPE1'\] are not in var_names",
)
case(
    T,
    "gene_set-all-genes",
    tok,
    call(T, gene_set=np.ones(200, dtype=bool)),
    match=r"gene_set must contain some genes but not all",
)
case(
    T,
    "gene_set-mask-wrong-length",
    tok,
    call(T, gene_set=np.ones(3, dtype=bool)),
    match=r"a boolean gene_set must have one entry per gene \(200\)",
)
case(
    T,
    "no-is_tf-column",
    lambda: drop_var(tok(), "is_tf"),
    call(T),
    match=r"var has no 'is_tf' column .* pass `gene_set=`",
)
case(
    T,
    "layers-out-of-range",
    tok,
    call(T, layers=[5]),
    match=r"layers \[5\] are out of range for a model with 1 layers",
)
case(T, "layers-str", tok, call(T, layers=["a"]), match=r"layers must be (layer )?indices")
for bad in (0, -1, "5"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
works(T, "duplicated-var-names", lambda: dup_var_names(tok()), call(T, gene_set=[GENE0]))
works(T, "gene_set-names", tok, call(T, gene_set=[GENE0, "XF2"]))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.generate --------------------------------------------------------------------------------
T = "tl.generate"
for bad in (5000, -2000, np.nan):
    case(
        T,
        f"timelapse={bad!r}",
        tok,
        call(T, timelapse=bad),
        match=r"timelapse must be finite months within the time tokens \[-1500, 1499\]",
    )
case(
    T,
    "timelapse-wrong-length",
    tok,
    call(T, timelapse=[12, 24]),
    match=r"timelapse must be one number or one per cell \(4\)",
)
for bad in (0, -1, "4"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(
    T,
    "groups-unknown",
    tok,
    call(T, groups=["neuron|female"]),
    match=r"no cells with a known age for the group\(s\) \['neuron\|female'\]",
)
case(
    T,
    "groupby-unknown",
    tok,
    call(T, groupby="tissue"),
    match=r"groupby columns \['tissue'\] are not in the obs of the adata",
)
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(
    T,
    "ages-all-NaN",
    lambda: with_obs(tok(), age_months=np.nan),
    call(T),
    match=r"no cell has a known obs\['age_months'\]",
)
for name, bad in (("temperature", 0), ("temperature", -1.0), ("top_k", 0), ("top_p", 1.5)):
    case(T, f"{name}={bad!r}", tok, call(T, **{name: bad}), match=name)
case(
    T,
    "expression_from-not-tokenized",
    tok,
    call_with(T, expression_from=lambda: fx().raw),
    match=TOKENIZE_FIRST,
)
case(T, "expression_from-list", tok, call(T, expression_from=[1]), TypeError, TYPE_MSG)
works(
    T, "string-obs-columns", lambda: as_strings(tok(), "cell_type", "sex"), call(T), unchanged=True
)
works(T, "categorical-ages", lambda: as_categories(tok(), "age_months"), call(T), unchanged=True)
works(T, "MuData", lambda: mudata_of(tok()), call(T), unchanged=True)

# tl.perturb ---------------------------------------------------------------------------------
T = "tl.perturb"
case(
    T,
    "genes-not-in-var",
    tok,
    call(T, genes=["NOPE1"]),
    match=r"genes \['NOPE1'\] are not in var_names; pass",
)
case(T, "genes-empty", tok, call(T, genes=[]), match=r"pass at least one gene in `genes`")
case(T, "genes-int", tok, call(T, genes=5), TypeError, r"genes must be a gene name or a list")
case(
    T,
    "gene-outside-vocab",
    lambda: tokenized_with(foreign_first_gene),
    call(T, genes=[GENE0]),
    match=r"genes \['MGM3'\] are not in the model's vocabulary",
)
case(T, "kind-unknown", tok, call(T, kind="knockout"), match=r"kind must be 'delete' or 'overexp")
for bad in (0, -1, "5"):
    case(T, f"n_cells={bad!r}", tok, call(T, n_cells=bad), match=r"n_cells " + NOT_INT)
case(T, "n_contexts-0", tok, call(T, n_contexts=0), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no reference cells: .* pass `reference=`",
)
case(
    T,
    "duplicated-var-name",
    lambda: dup_var_names(tok()),
    call(T, genes=[GENE0]),
    match=r"var_names are not unique.*var_names_make_unique",
)
works(T, "string-obs-columns", lambda: as_strings(tok(), "condition", "cell_type", "sex"), call(T))
works(T, "MuData", lambda: mudata_of(tok()), call(T))
unchanged_copy(T)

# tl.evaluate --------------------------------------------------------------------------------
T = "tl.evaluate"
case(T, "calibrate-a-string", tok, call(T, calibrate="yes"), TypeError, CALIBRATE)
case(
    T,
    "heldout_cell_types-unknown",
    tok,
    call(T, heldout_cell_types=["neuron"]),
    match=r"heldout_cell_types \['neuron'\] are not values of obs\['cell_type'\]; pass",
)
case(
    T,
    "heldout_ages-reversed",
    tok,
    call(T, heldout_ages=(100, 10)),
    match=r"heldout_ages must be \(low, high\) months",
)
case(
    T,
    "nothing-held-out",
    tok,
    call(T, heldout_cell_types=[]),
    match=r"nothing to evaluate: pass `heldout_cell_types`",
)
case(
    T,
    "train_mask-wrong-length",
    tok,
    call(T, train_mask=np.ones(3, dtype=bool)),
    match=r"train_mask must be a boolean mask over the 144 cells",
)
case(
    T,
    "train_mask-column-missing",
    tok,
    call(T, train_mask="is_train"),
    match=r"obs has no column 'is_train': pass a boolean obs column",
)
case(
    T,
    "ablations-unknown",
    tok,
    call(T, ablations=["foo"]),
    match=r"unknown ablations \['foo'\]; choose from",
)
case(T, "n_contexts-0", tok, call(T, n_contexts=0), match=r"n_contexts " + NOT_INT)
case(T, "n_context_cells-0", tok, call(T, n_context_cells=0), match=r"n_context_cells " + NOT_INT)
case(T, "n_cells-negative", tok, call(T, n_cells=-1), match=r"n_cells " + NOT_INT)
case(T, "n_boot-0", tok, call(T, n_boot=0), match=r"n_boot " + NOT_INT)
case(
    T,
    "doublet_pairs-unknown",
    tok,
    call(T, doublet_pairs="all"),
    match=r"doublet_pairs must be 'any' or 'same_type'",
)
case(T, "generated-list", tok, call(T, generated=[1]), TypeError, TYPE_MSG)
case(
    T,
    "generated-untokenized",
    tok,
    call_with(T, generated=lambda: ad.AnnData(np.zeros((3, 4), dtype=np.float32))),
    match=r"mt\.pp\.tokenize",
)
case(
    T,
    "cell_type_key-missing",
    tok,
    call(T, cell_type_key="type"),
    match=r"obs has no column 'type': pass `cell_type_key=`",
)
case(
    T,
    "sex_key-missing",
    tok,
    call(T, sex_key="gender"),
    match=r"obs has no column 'gender': pass `sex_key=`",
)
case(
    T,
    "reference-not-present",
    tok,
    call(T, reference="healthy"),
    match=r"no training cells: check .*`reference`",
)
case(
    T,
    "time_key-not-numeric",
    tok,
    call(T, time_key="cell_type"),
    match=r"must be numeric months.* pass `time_key=`",
)
case(
    T,
    "heldout_donors-unknown",
    tok,
    call(T, heldout_donors=["D99", "D00"]),
    match=r"heldout_donors 'D99' are not values of obs\['donor'\]; pass donor ids from",
)
case(
    T,
    "heldout_donors-without-donor_key",
    tok,
    call(T, heldout_donors=["D00"], donor_key=None),
    match=r"heldout_donors needs donors: pass `donor_key=`",
)
case(
    T,
    "heldout_donors-every-control-donor",
    tok,
    call(T, heldout_donors=[f"D0{i}" for i in range(8)]),  # D00-D07: every control donor
    match=r"no training cells: .*keep some donors out of `heldout_donors`",
)
works(
    T,
    "heldout_donors-one-id",
    tok,
    call(T, heldout_donors="D03"),
    check=lambda d, out: ("heldout_donor" in set(out["split"])) or pytest.fail("no split"),
)
works(
    T,
    "string-obs-columns",
    lambda: as_strings(tok(), "condition", "cell_type", "sex", "donor"),
    call(T),
)

# tl.train -----------------------------------------------------------------------------------
T = "tl.train"
case(T, "before-tokenize", raw, call(T), match=TOKENIZE_FIRST)
case(T, "vocab-dict", tok, call(T, vocab={}), TypeError, r"vocab must be a maxtoki\.pp\.GeneVocab")
case(T, "stage-3", tok, call(T, stage=3), match=r"stage must be one of \[1, 2\], got 3")
for bad in (0, -1, "5"):
    case(T, f"steps={bad!r}", tok, call(T, steps=bad), match=r"steps")
case(
    T,
    "model-int",
    tok,
    call(T, model=42),
    TypeError,
    r"model must be a preset name, a model folder or a MaxToki",
)
case(
    T,
    "model-unknown-preset",
    tok,
    call(T, model="huge"),
    match=r"unknown preset 'huge'; choose one of",
)
case(
    T,
    "model-of-another-vocab",
    tok,
    call_with(
        T, model=lambda: mt.train.build_model("tiny", vocab=fx().other_medians, overrides=TINY)
    ),
    match=r"the model's own vocabulary .* disagrees with the given one",
)
works(
    T,
    "stage-1-model-gains-time-tokens",
    tok,
    call_with(T, model=lambda: copy.deepcopy(fx().model_genes_only)),
    check=lambda _, out: out[0].config.has_time_tokens and out[0].vocab.hash == fx().vocab.hash,
)
case(
    T, "config-unknown-field", tok, call(T, config={"learning_rate": 1e-3}), match=r"learning_rate"
)
case(T, "config-negative-lr", tok, call(T, config={"lr": -1.0}), match=r"lr")
case(T, "config-str", tok, call(T, config="fast"), TypeError, r"config must be a TrainConfig")
case(T, "prompts-list", tok, call(T, prompts=[1, 2]), TypeError, r"prompts must be")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(T, "groupby-unknown", tok, call(T, groupby="tissue"), match=r"groupby columns \['tissue'\]")
case(T, "max_genes_per_cell-0", tok, call(T, max_genes_per_cell=0), match=r"max_genes_per_cell")
case(
    T,
    "stage-2-without-time-tokens",
    lambda: fx().tok_genes_only.copy(),
    call_with(T, vocab=lambda: fx().genes_only),
    match=r"(no time tokens|temporal).*",
)
case(
    T,
    "model_overrides-unknown",
    tok,
    call(T, model_overrides={"width": 3}),
    TypeError,
    r"unknown MaxTokiConfig fields \['width'\]; valid fields",
)
case(
    T,
    "model_overrides-negative",
    tok,
    call(T, model_overrides={**TINY, "hidden_size": -2}),
    match=r"hidden_size must be >= 1",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T),
    match=r"obs_names are not unique.*run `adata\.obs_names_make_unique\(\)`",
)
works(
    T,
    "stage-1-without-time-tokens",
    lambda: fx().tok_genes_only.copy(),
    call_with(T, vocab=lambda: fx().genes_only, stage=1),
    unchanged=True,
)
works(
    T, "string-obs-columns", lambda: as_strings(tok(), "cell_type", "sex"), call(T), unchanged=True
)


@pytest.mark.parametrize("c", cases_of("tl"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)


def test_every_public_function_is_covered():
    check_coverage("tl")
