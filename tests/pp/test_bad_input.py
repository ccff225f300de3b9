"""Bad input to mt.pp: clear errors that name the fix, and the input left unchanged."""

from __future__ import annotations

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# pp.tokenize --------------------------------------------------------------------------------
T = "pp.tokenize"
case(
    T,
    "NaN-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.nan)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "inf-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.inf)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "negative-X",
    lambda: with_X(raw(), lambda X: set_X(X, -1.0)),
    call(T),
    match=r"negative values; .*pass layer=",
)
case(
    T,
    "log-normalised-X",
    lambda: with_X(raw(), log_normalised),
    call(T),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "float-overflow-counts",
    lambda: with_X(raw(), lambda X: (X > 0) * 1e307),  # finite, but cells sum to infinity
    call(T),
    match=r"the counts of cell 0 sum to infinity .* pass layer= naming the raw counts",
)
works(
    T,
    "int64-counts-near-overflow",
    lambda: with_X(raw(), lambda X: X.astype(np.int64) << 40),
    call(T),
    check=same_tokens,
)
works(T, "duplicated-obs-names", lambda: dup_obs_names(raw()), call(T))
works(T, "duplicated-var-names", lambda: dup_var_names(raw()), call(T), check=same_tokens)
works(
    T, "n_counts-categorical", lambda: as_categories(raw(), "n_counts"), call(T), check=same_tokens
)
works(T, "backed", lambda: backed("raw"), call(T), check=same_tokens)
works(T, "MuData", lambda: mudata_of(raw()), call(T))
unchanged_copy(T)
case(
    T,
    "no-gene-in-vocab",
    raw,
    lambda d: mt.pp.tokenize(d, vocab=fx().foreign),
    match=r"none of the 200 gene IDs .* check the species and ID type",
)
case(
    T,
    "gene-symbols-no-ids",
    lambda: symbols_only(raw()),
    call(T),
    match=r"var_names look like gene symbols .* run mt\.pp\.map_gene_ids first",
)
case(T, "0-genes", lambda: no_genes(raw()), call(T), match=r"no genes.*")
case(
    T,
    "vocab-dict",
    raw,
    lambda d: mt.pp.tokenize(d, vocab={"<pad>": 0}),
    TypeError,
    r"vocab must be a maxtoki\.pp\.GeneVocab.*GeneVocab\.from_files",
)
case(T, "max_len-str", raw, call(T, max_len="4096"), match=r"max_len must be an integer ≥ 3")
case(T, "max_len-negative", raw, call(T, max_len=-5), match=r"max_len must be an integer ≥ 3")
case(
    T,
    "layer-missing",
    raw,
    call(T, layer="counts"),
    match=r"layer 'counts' not found; available layers: \[\] \(layer=None uses X\)",
)
case(
    T,
    "gene_id_key-missing",
    raw,
    call(T, gene_id_key="gene_id"),
    match=r"var has no column 'gene_id' .* pass gene_id_key=",
)
case(T, "min_overlap-above-1", raw, call(T, min_overlap=2), match=r"min_overlap must be a fraction")
case(T, "chunk_size-0", raw, call(T, chunk_size=0), match=r"chunk_size must be a positive integer")
case(T, "chunk_size-str", raw, call(T, chunk_size="100"), match=r"chunk_size must be a positive")
case(T, "key_added-empty", raw, call(T, key_added=""), match=r"key_added must be a non-empty")

# pp.gene_medians ----------------------------------------------------------------------------
T = "pp.gene_medians"
case(
    T,
    "NaN-in-X",
    lambda: with_X(raw(), lambda X: set_X(X, np.nan)),
    call(T),
    match=r"NaN or infinite values; pass raw counts",
)
case(
    T,
    "negative-X",
    lambda: with_X(raw(), lambda X: set_X(X, -1.0)),
    call(T),
    match=r"negative values; .*pass layer=",
)
case(
    T,
    "log-normalised-X",
    lambda: with_X(raw(), log_normalised),
    call(T),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "all-zero-counts",
    lambda: with_X(raw(), lambda X: X * 0),
    call(T),
    match=r"no gene has a non-zero count.*check `layer=`",
)
case(T, "0-genes", lambda: no_genes(raw()), call(T), match=r"0 genes; gene medians need")
case(T, "empty-list", lambda: [], call(T), match=r"no data given; pass an AnnData")
case(T, "list-with-a-non-AnnData", lambda: [raw(), 5], call(T), TypeError, TYPE_MSG)
case(
    T,
    "method-unknown",
    raw,
    call(T, method="median"),
    match=r"method must be 'exact' or 'histogram'",
)
case(T, "n_bins-1", raw, call(T, method="histogram", n_bins=1), match=r"n_bins must be an integer")
case(T, "chunk_size-str", raw, call(T, chunk_size="10"), match=r"chunk_size must be a positive")
case(T, "layer-missing", raw, call(T, layer="counts"), match=r"layer 'counts' not found")
works(T, "backed", lambda: backed("raw"), call(T), unchanged=True)
works(T, "h5ad-path", lambda: fx().path, call(T), unchanged=True)
works(T, "duplicated-obs-names", lambda: dup_obs_names(raw()), call(T), unchanged=True)

# pp.map_gene_ids ----------------------------------------------------------------------------
T = "pp.map_gene_ids"
SYM = lambda: symbols_only(raw())  # noqa: E731
case(
    T,
    "mapping-list",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, [("MGM3", "ENSG1")]),
    TypeError,
    r"mapping must be a dict, Series or two-column DataFrame",
)
case(
    T,
    "mapping-empty",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, {}),
    match=r"the mapping is empty.*; pass gene name → Ensembl ID pairs",
)
case(
    T,
    "mapping-3-columns",
    SYM,
    lambda d: mt.pp.map_gene_ids(d, pd.DataFrame({"a": ["x"], "b": ["y"], "c": ["z"]})),
    match=r"needs exactly two columns \(names, Ensembl IDs\)",
)
case(
    T,
    "mapping-reversed",
    SYM,
    lambda d: mt.pp.map_gene_ids(
        d, dict(zip(fx().raw.var["ensembl_id"], fx().raw.var_names, strict=True))
    ),
    match=r"none of the 200 gene names .* check from_key= and the mapping's direction",
)
case(
    T,
    "from_key-missing",
    SYM,
    call(T, from_key="symbol"),
    match=r"var has no column 'symbol' .* pass from_key=None",
)
case(T, "key_added-None", SYM, call(T, key_added=None), match=r"key_added must be a non-empty")
works(T, "duplicated-var-names", lambda: dup_var_names(symbols_only(raw())), call(T))
works(T, "MuData", lambda: mudata_of(symbols_only(raw())), call(T))
unchanged_copy(T)

# pp.trajectories ----------------------------------------------------------------------------
T = "pp.trajectories"
case(
    T,
    "time_key-missing",
    raw,
    call(T, time_key="age"),
    match=r"obs has no time column 'age'; pass `time_key=`",
)
case(
    T,
    "time_key-not-numeric",
    raw,
    call(T, time_key="cell_type"),
    match=r"must hold numeric times in months.*pd\.to_numeric",
)
case(
    T,
    "infinite-ages",
    lambda: with_obs(raw(), age_months=np.inf),
    call(T),
    match=r"infinite values; times must be finite months",
)
case(
    T,
    "groupby-unknown",
    raw,
    call(T, groupby="tissue"),
    match=r"groupby columns \['tissue'\] are not in the obs of the AnnData; pass existing columns",
)
case(T, "n_context-0", raw, call(T, n_context=0), match=r"n_context must satisfy 1 <= min <= max")
case(
    T,
    "n_context-str",
    raw,
    call(T, n_context="23"),
    TypeError,
    r"n_context must be an int or a \(min, max\) pair",
)
case(
    T,
    "n_prompts-negative",
    raw,
    call(T, n_prompts=-1),
    match=r"n_prompts must be a non-negative integer",
)
case(
    T,
    "n_prompts-str",
    raw,
    call(T, n_prompts="10"),
    TypeError,
    r"n_prompts must be a non-negative integer",
)
case(T, "task-unknown", raw, call(T, task="Both"), match=r"task must be one or both of")
case(T, "task_mix-above-1", raw, call(T, task_mix=1.5), match=r"task_mix is the fraction")
case(T, "task_mix-str", raw, call(T, task_mix="half"), match=r"task_mix is the fraction")
case(
    T,
    "holdout-unknown-column",
    raw,
    call(T, holdout={"tissue": "lung"}),
    match=r"holdout names obs column 'tissue', which does not exist; pass",
)
case(
    T,
    "holdout-mask-wrong-length",
    raw,
    call(T, holdout=np.ones(3, dtype=bool)),
    TypeError,
    r"boolean mask of length 144",
)
case(
    T,
    "sort_context-str",
    raw,
    call(T, sort_context="yes"),
    TypeError,
    r"sort_context must be True or False, got 'yes'",
)
case(
    T,
    "allow_same_time-int",
    raw,
    call(T, allow_same_time=1),
    TypeError,
    r"allow_same_time must be True or False, got 1",
)
case(
    T,
    "query_sampling-unknown",
    raw,
    call(T, query_sampling="uniform"),
    match=r"query_sampling must be 'time_points' .* or 'cells' .*, got 'uniform'",
)
case(
    T,
    "group_balance-above-1",
    raw,
    call(T, group_balance=2.0),
    match=r"group_balance must lie in \[0, 1\] \(0: groups in proportion to their size",
)
case(
    T,
    "group_balance-str",
    raw,
    call(T, group_balance="0.1"),
    TypeError,
    r"group_balance must be a number in \[0, 1\] .* or None",
)
case(
    T,
    "exclude_times-scalar",
    raw,
    call(T, exclude_times=360),
    TypeError,
    r"exclude_times must be an inclusive \(min, max\) pair of months .* pass a mask to `holdout=`",
)
case(
    T,
    "exclude_times-reversed",
    raw,
    call(T, exclude_times=(500, 100)),
    match=r"exclude_times must be a finite \(min, max\) pair of months with min <= max",
)
case(
    T,
    "exclude_times-NaN",
    raw,
    call(T, exclude_times=(np.nan, 100)),
    match=r"exclude_times must be a finite \(min, max\) pair",
)
case(
    T,
    "exclude_times-every-age",
    raw,
    call(T, exclude_times=(-1e6, 1e6)),
    match=r"no cell outside exclude_times=.*Narrow `exclude_times`",
)
works(
    T,
    "exclude_times-matches-nothing",
    raw,
    call(T, exclude_times=(-50, -10)),
    warns=r"exclude_times \(-50\.0, -10\.0\) matches no cell",
    unchanged=True,
)
works(
    T,
    "exclude_times-with-holdout",
    raw,
    call(T, exclude_times=(0, 400), holdout={"sex": "female"}),
    unchanged=True,
)
works(
    T,
    "legacy-sampler",
    raw,
    call(T, sort_context=True, allow_same_time=False, query_sampling="cells", group_balance=None),
    unchanged=True,
)
case(
    T,
    "time_range-reversed",
    raw,
    call(T, time_range=(10, 0)),
    match=r"time_range must be \(min, max\) months with max > min",
)
case(
    T,
    "single-time-point",
    lambda: with_obs(raw(), age_months=120),
    call(T),
    match=r"single time point.*Drop these groups, use a coarser `groupby`",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(raw()),
    call(T),
    match=r"obs_names are not unique.*obs_names_make_unique",
)
works(
    T,
    "string-group-columns",
    lambda: as_strings(raw(), "cell_type", "sex"),
    call(T),
    unchanged=True,
)
works(T, "categorical-ages", lambda: as_categories(raw(), "age_months"), call(T), unchanged=True)
works(
    T,
    "ages-beyond-time-tokens",
    lambda: with_obs(raw(), age_months=lambda o: o.age_months * 100),
    call(T),
    warns=r"outside the time-token range .* clipped",
    unchanged=True,
)
works(
    T,
    "some-ages-NaN",
    lambda: with_obs(raw(), age_months=lambda o: o.age_months.where(o.index != o.index[0])),
    call(T),
    warns=r"have no value in obs\['age_months'\]",
    unchanged=True,
)
works(T, "MuData", lambda: mudata_of(raw()), call(T), unchanged=True)


# pp.tokenize_corpus ---------------------------------------------------------------------------
def write_h5ad(change: Callable[[ad.AnnData], ad.AnnData], name: str) -> list[Path]:
    path = tmp_path_of("corpus") / f"{name}.h5ad"
    if not path.exists():
        change(raw()).write_h5ad(path)
    return [path]


def corpus(out: str, **kw: Any) -> Callable[[Any], Any]:
    return lambda files: mt.pp.tokenize_corpus(
        files, tmp_root() / "stores" / out, **{"vocab": V(), **kw}
    )


T = "pp.tokenize_corpus"
case(T, "no-files", lambda: [], corpus("a"), match=r"no (input )?files")
case(
    T,
    "missing-file",
    lambda: [tmp_root() / "nope.h5ad"],
    corpus("b"),
    match=r"nope\.h5ad.* (does not exist|not found)",
)
case(
    T,
    "vocab-dict",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("c", vocab={}),
    TypeError,
    r"vocab must be a maxtoki\.pp\.GeneVocab",
)
case(
    T,
    "log-normalised-file",
    lambda: write_h5ad(lambda a: with_X(a, log_normalised), "log"),
    corpus("d"),
    match=r"looks log-normalised.*pass layer=",
)
case(
    T,
    "obs_keys-missing",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("e", obs_keys=["tissue"]),
    match=r"tissue",
)
case(
    T,
    "no-gene-in-vocab",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("f", vocab=fx().foreign),
    match=r"none of the 200 gene IDs",
)
case(
    T,
    "max_len-0",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("g", max_len=0),
    match=r"max_len must be an integer ≥ 3",
)
case(
    T,
    "client-not-a-Client",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("h", client=42),
    TypeError,
    r"client must be None \(run here\), a distributed\.Client, or 'active'.* got int",
)
case(
    T,
    "client-address-string",
    lambda: write_h5ad(lambda a: a, "ok"),
    corpus("i", client="tcp://127.0.0.1:8786"),
    match=r"client must be None .*'active'.* got the string 'tcp://",
)

# pp.GeneVocab -------------------------------------------------------------------------------
T = "pp.GeneVocab"
GV = mt.pp.GeneVocab
case(
    T,
    "no-special-tokens",
    lambda: ("a", "b"),
    lambda t: GV(t, {}),
    match=r"starts with \('<pad>', '<mask>', '<bos>', '<eos>'\)",
)
case(T, "no-genes", lambda: {}, lambda m: GV.from_genes(m), match=r"no genes?.*gene_medians")
case(
    T,
    "median-NaN",
    lambda: {"ENSG00000000001": np.nan},
    lambda m: GV.from_genes(m),
    match=r"gene medians must be finite and > 0.*mt\.pp\.gene_medians",
)
case(
    T,
    "median-negative",
    lambda: {"ENSG00000000001": -1.0},
    lambda m: GV.from_genes(m),
    match=r"gene medians must be finite and > 0",
)
case(
    T,
    "medians-not-a-mapping",
    lambda: [1.0, 2.0],
    lambda m: GV.from_genes(m),
    TypeError,
    r"gene_medians must be a mapping",
)
case(
    T,
    "time_range-reversed",
    lambda: {"ENSG00000000001": 1.0},
    lambda m: GV.from_genes(m, time_range=(5, 1)),
    match=r"time_range must be \(min, max\)",
)
case(
    T,
    "missing-files",
    lambda: tmp_root() / "nope",
    lambda p: GV.from_files(p / "tokens.json", p / "medians.json"),
    match=r"tokens\.json.* (does not exist|not found)",
)
case(
    T,
    "load-missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: GV.load(p),
    match=r"(does not exist|not found)",
)
case(
    T,
    "time-token-out-of-range",
    lambda: 5000,
    lambda m: V().time_token_id(m),
    match=r"months must lie in the time-token range \[-1500, 1499\]",
)

# pp.TokenStore ------------------------------------------------------------------------------
T = "pp.TokenStore"
case(
    T,
    "missing-folder",
    lambda: tmp_root() / "nope",
    lambda p: mt.pp.TokenStore(p),
    match=r"is not a token store .* write one with mt\.pp\.tokenize_corpus",
)
case(T, "a-file", lambda: fx().path, lambda p: mt.pp.TokenStore(p), match=r"is not a token store")
case(
    T,
    "None",
    lambda: None,
    lambda p: mt.pp.TokenStore(p),
    TypeError,
    r"path must be the folder of a token store .* got NoneType; write one with mt\.pp",
)
works(T, "a-store", lambda: fx().store, lambda p: mt.pp.TokenStore(p), unchanged=True)


T = "pp.PromptEncoder"
PE = mt.pp.PromptEncoder


def encoder(**kw):
    return lambda: PE(V(), **kw)


def cell_of(i: int = 0) -> np.ndarray:
    tok = fx().tok
    return np.asarray(tok.obsm["maxtoki_tokens"][i][: tok.obs["maxtoki_n_tokens"].iloc[i]])


case(T, "stage-1-vocabulary", lambda: fx().genes_only, lambda v: PE(v), match=r"time tokens")
case(T, "max_length-2", lambda: 2, lambda n: PE(V(), max_length=n), match=r"max_length must")
case(T, "max_genes-0", lambda: 0, lambda n: PE(V(), max_genes=n), match=r"max_genes must")
case(T, "unknown-task", encoder(), lambda e: e.encode([cell_of()], [], task="X"), match="task")
case(
    T,
    "dts-count",
    encoder(),
    lambda e: e.encode([cell_of(0), cell_of(1)], [], task="NextCell", dt_query=3),
    match=r"one timelapse between each pair",
)
case(
    T,
    "no-query",
    encoder(),
    lambda e: e.encode([cell_of()], [], task="TimeBetweenCells"),
    match=r"needs the query cell",
)
case(
    T,
    "no-dt_query",
    encoder(),
    lambda e: e.encode([cell_of()], [], task="NextCell"),
    match=r"needs `dt_query`",
)
case(
    T,
    "timelapse-in-days",
    encoder(),
    lambda e: e.encode([cell_of(0), cell_of(1)], [36500], task="NextCell", dt_query=3),
    match=r"not a whole number within the time tokens .*months \(not days",
)
case(
    T,
    "not-a-cell",
    encoder(),
    lambda e: e.encode([np.array([5, 6, 7])], [], task="NextCell", dt_query=3),
    match=r"is not `<bos> genes… <eos>`",
)
case(
    T,
    "too-long-without-truncation",
    encoder(max_length=8, truncate=False),
    lambda e: e.encode([cell_of(0), cell_of(1)], [3], task="NextCell", dt_query=3),
    match=r"max_length is 8 \(truncation is off\)",
)


# pp.read_tokenized --------------------------------------------------------------------------
# It reads a Hugging Face dataset (a folder or a datasets.Dataset), not an AnnData.
T = "pp.read_tokenized"


def hf_cells(*cells: list[int], saved: str | None = None, **columns: Any) -> Callable[[], Any]:
    """Cells as the official tokenizer lays them out (a saved folder when ``saved`` is named)."""

    def build():
        import datasets

        ds = datasets.Dataset.from_dict({"input_ids": [list(c) for c in cells], **columns})
        if saved is None:
            return ds
        path = tmp_path_of("hf") / f"{saved}.dataset"
        if not path.exists():
            ds.save_to_disk(str(path))
        return path

    return build


def read_tok(**kw: Any) -> Callable[[Any], Any]:
    return lambda data: mt.pp.read_tokenized(data, **kw)


OK_CELLS = ([2, 5, 6, 3], [2, 7, 3])
case(
    T,
    "missing-folder",
    lambda: tmp_root() / "nope.dataset",
    read_tok(),
    match=r"nope\.dataset' does not exist; pass the folder the official tokenizer wrote",
)
case(
    T,
    "not-a-dataset-folder",
    lambda: tmp_path_of("not-a-dataset"),
    read_tok(),
    match=r"is not a saved Hugging Face dataset .*`Dataset\.save_to_disk`",
)
case(
    T,
    "a-list",
    lambda: [[2, 5, 3]],
    read_tok(),
    TypeError,
    r"data must be the folder of a saved Hugging Face dataset .* got list",
)
case(
    T,
    "DatasetDict",
    lambda: hf_cells(*OK_CELLS)(),
    lambda ds: mt.pp.read_tokenized(__import__("datasets").DatasetDict({"train": ds})),
    match=r"a DatasetDict with splits \['train'\]; pass one split, e\.g\. `data\['train'\]`",
)
case(
    T,
    "no-input_ids",
    lambda: __import__("datasets").Dataset.from_dict({"ids": [[2, 5, 3]]}),
    read_tok(),
    match=r"no 'input_ids' column .*official tokenizer",
)
case(
    T,
    "ids-of-another-dictionary",
    hf_cells([2, 5, 3], [2, 90_000, 3], saved="foreign"),
    read_tok(),
    match=r"cell 1 holds token id 90000, outside .* another token dictionary .*GeneVocab\.from_",
)
case(
    T,
    "a-prompt-dataset",
    hf_cells([2, 5, 3, 21_790, 2, 6, 3, 23_275, 2, 7, 3, 23_276]),
    read_tok(),
    match=r"time and question tokens, so this looks like an assembled prompt",
)
case(
    T,
    "time-token-with-the-temporal-vocabulary",
    hf_cells([2, 5, 21_790, 3]),
    read_tok(vocab=mt.pp.GeneVocab.official(temporal=True)),
    match=r"cell 0 holds '15' .*assembled prompt \(cell paragraph\) dataset",
)
case(T, "no-bos", hf_cells([5, 6, 3]), read_tok(), match=r"cell 0 does not start with <bos>")
case(T, "no-eos", hf_cells([2, 5, 6]), read_tok(), match=r"cell 0 does not end with <eos>")
case(T, "padded", hf_cells(*OK_CELLS, [2, 5, 3, 0]), read_tok(), match=r"strip the <pad>")
case(T, "gene-twice", hf_cells([2, 5, 6, 5, 3]), read_tok(), match=r"lists gene .* twice")
case(T, "one-token", hf_cells([2]), read_tok(), match=r"cell 0 has 1 token\(s\)")
case(
    T,
    "obs_keys-missing",
    hf_cells(*OK_CELLS, time=[1, 2]),
    read_tok(obs_keys=["tissue"]),
    match=r"obs_keys \['tissue'\] are not columns of the dataset; pass some of \['time'\]",
)
case(
    T,
    "duplicated-cell-ids",
    hf_cells(*OK_CELLS, unique_cell_id=["c", "c"]),
    read_tok(),
    match=r"'unique_cell_id' .* has duplicates; .*or None to name the cells by row position",
)
case(T, "vocab-dict", hf_cells(*OK_CELLS), read_tok(vocab={}), TypeError, r"vocab must be a")
case(T, "chunk_size-0", hf_cells(*OK_CELLS), read_tok(chunk_size=0), match=r"chunk_size must")
case(
    T,
    "out_dir-holds-a-file",
    hf_cells(*OK_CELLS, saved="ok"),
    lambda p: mt.pp.read_tokenized(p, out_dir=fx().path.parent),
    match=r"exists and is not a token store; use a new out_dir",
)
works(T, "a-saved-dataset", hf_cells(*OK_CELLS, saved="ok"), read_tok(), unchanged=True)
works(T, "an-in-memory-dataset", hf_cells(*OK_CELLS, time=[1, 2]), read_tok(), unchanged=True)


@pytest.mark.parametrize("c", cases_of("pp"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)


def test_every_public_function_is_covered():
    check_coverage("pp")
