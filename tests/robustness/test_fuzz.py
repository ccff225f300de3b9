"""Property-based fuzzing (hypothesis, bounded budgets): tokenizer, prompt builder, config loaders.

Each property either produces a result that an independent reference (written here) confirms, or
a clean ``ValueError``/``TypeError`` exactly where the reference says the input is invalid; any
other exception fails. ``test_tokenize.py`` already fuzzes well-formed small counts against its
reference; here the inputs are hostile: huge and non-integer values, NaN/inf, negative counts,
non-canonical CSR, vocabulary subsets, overlap thresholds, random obs tables, random configs.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

import maxtoki as mt
from maxtoki.models import MaxTokiConfig
from maxtoki.pp import GeneVocab
from maxtoki.train import ArrayTokens, Collator, PromptDataset, TrainConfig

_BASE = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def fuzz(n: int) -> settings:
    """A bounded, reproducible budget of ``n`` examples."""
    return settings(_BASE, max_examples=n)


@pytest.fixture(autouse=True)
def _quiet():
    old = mt.settings.verbosity
    mt.settings.verbosity = 0
    yield
    mt.settings.verbosity = old


def _gene(i: int) -> str:
    return f"ENSG{i:011d}"


# --- 1. the tokenizer -------------------------------------------------------------------------
def reference_tokenize(X, ids, medians, *, max_len, chunk_size, n_counts, min_overlap):
    """Rank value encoding from the spec, cell by cell; ``None`` where a ValueError is due.

    ``X`` is the dense float64 matrix the tokenizer sees (after the dtype of the input), ``ids``
    the var gene IDs, ``medians`` the vocabulary (gene ID → median, token ids from 4 in order).
    """
    token = {g: 4 + i for i, g in enumerate(medians)}
    med = {token[g]: m for g, m in medians.items()}
    n_obs = X.shape[0]
    if n_obs == 0 or not any(g in token for g in ids):
        return None
    if not np.isfinite(X).all() or (X < 0).any():
        return None
    in_vocab = np.array([g in token for g in ids])
    for s in range(0, n_obs, chunk_size):  # log-normalised data is judged per chunk
        block = X[s : s + chunk_size]
        if (block != np.floor(block)).any() and block.max() < 100:
            return None
    totals = X.sum(axis=1)
    voc = X[:, in_vocab].sum(axis=1)
    if n_counts is not None and ((voc > 0) & ~(n_counts > 0)).any():
        return None
    if n_obs > chunk_size and totals[:chunk_size].sum() > 0:  # the early check on chunk 0
        if voc[:chunk_size].sum() / totals[:chunk_size].sum() < min_overlap / 2:
            return None
    if totals.sum() > 0 and voc.sum() / totals.sum() < min_overlap:
        return None
    out = []
    for r in range(n_obs):
        per_token: dict[int, float] = {}
        for j, g in enumerate(ids):
            if g in token and X[r, j] != 0:
                per_token[token[g]] = per_token.get(token[g], 0.0) + X[r, j]
        n = totals[r] if n_counts is None else n_counts[r]
        t = np.array(sorted(per_token), dtype=np.int64)
        x = np.array([per_token[k] for k in t], dtype=np.float64)
        with np.errstate(divide="ignore"):  # a cell without counts has no genes
            v = ((x * (1.0 / n)) * 10000.0) * (1.0 / np.array([med[k] for k in t]))
        order = np.lexsort((t, -v))  # value descending, ties by ascending token id
        out.append([2, *t[order][: max_len - 2].tolist(), 3])
    return out


VALUES = st.one_of(
    st.sampled_from([0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 7.0]),  # ties
    st.sampled_from([2.0**24 + 1, 1e9 + 3, 1e15, 123456789.0]),  # huge, not float32-exact
    st.sampled_from([0.5, 150.25, 2.5e3 + 0.5]),  # non-integer (log data if the max < 100)
    st.sampled_from([-1.0, float("nan"), float("inf")]),  # invalid
)
DTYPES = ["float32", "float64", "int32", "int64", "uint16", "float16", "bool"]


@st.composite
def tokenizer_cases(draw):
    n_pool = draw(st.integers(1, 8))
    vocab_genes = draw(st.permutations(range(n_pool + 3)))[: draw(st.integers(1, n_pool + 3))]
    medians = {
        _gene(g): draw(st.sampled_from([1.0, 1.105969, 0.5, 1e-3, 1e3, 2.0])) for g in vocab_genes
    }
    n_cols = draw(st.integers(1, 10))
    ids = [_gene(draw(st.integers(0, n_pool + 4))) for _ in range(n_cols)]  # repeats: summed
    n_cells = draw(st.sampled_from([0, *range(1, 13)]))
    p_bad = draw(st.sampled_from([0.0, 0.0, 0.02, 0.1]))
    values = []
    for _ in range(n_cells * n_cols):
        v = draw(VALUES)
        if (v < 0 or not math.isfinite(v)) and draw(st.floats(0, 1)) >= p_bad:
            v = 0.0
        values.append(v)
    X = np.array(values, dtype=np.float64).reshape(n_cells, n_cols)
    if draw(st.booleans()):  # mostly valid data with integer counts
        X = np.where(np.isfinite(X) & (X >= 0), np.floor(X), 0.0)
    empty_rows = draw(st.lists(st.integers(0, max(n_cells - 1, 0)), max_size=3))
    if n_cells:
        X[empty_rows] = 0
    dtype = draw(st.sampled_from(DTYPES))
    fmt = draw(st.sampled_from(["dense", "csr", "csc", "csr-duplicates"]))
    if dtype == "float16":  # SciPy has no float16 sparse matrices; AnnData holds them dense
        fmt = "dense"
    return dict(
        medians=medians,
        ids=ids,
        X=X,
        dtype=dtype,
        fmt=fmt,
        max_len=draw(st.integers(3, n_cols + 4)),
        chunk_size=draw(st.integers(1, n_cells + 2)),
        obs_counts=draw(st.sampled_from([None, "sum+", "random", "zeros"])),
        min_overlap=draw(st.sampled_from([0.0, 0.0, 0.3, 0.9])),
        seed=draw(st.integers(0, 2**16)),
    )


def _as_dtype(X: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in ("int32", "int64", "uint16"):
        info = np.iinfo(dtype)
        X = np.where(np.isfinite(X), np.clip(np.floor(X), info.min, info.max), 0)
    with np.errstate(over="ignore", invalid="ignore"):
        return X.astype(dtype)


def _matrix(Xd: np.ndarray, fmt: str, rng: np.random.Generator):
    if fmt == "dense":
        return Xd
    if fmt == "csc":
        return sp.csc_matrix(Xd)
    csr = sp.csr_matrix(Xd)
    if fmt == "csr" or csr.nnz == 0:
        return csr
    # split every entry in two (duplicated columns in a row) and shuffle each row's entries
    rows, cols, vals = [], [], []
    coo = csr.tocoo()
    for r, c, v in zip(coo.row, coo.col, coo.data, strict=True):
        if Xd.dtype.kind == "f" and np.isfinite(v) and v > 1 and v == np.floor(v):
            half = np.floor(v / 2)
            rows += [r, r]
            cols += [c, c]
            vals += [half, v - half]
        else:
            rows.append(r), cols.append(c), vals.append(v)
    order = np.lexsort((rng.random(len(rows)), rows))
    rows, cols = np.asarray(rows)[order], np.asarray(cols)[order]
    vals = np.asarray(vals, dtype=Xd.dtype)[order]
    indptr = np.searchsorted(rows, np.arange(Xd.shape[0] + 1))
    m = sp.csr_matrix((vals, cols, indptr), shape=Xd.shape)
    m.has_canonical_format = False
    return m


@fuzz(150)
@given(tokenizer_cases())
def test_tokenizer_matches_reference_or_refuses(case):
    rng = np.random.default_rng(case["seed"])
    vocab = GeneVocab.from_genes(case["medians"], time_range=None)
    Xd = _as_dtype(case["X"], case["dtype"])
    M = _matrix(Xd, case["fmt"], rng)
    X_seen = np.asarray(sp.csr_matrix(M).toarray() if sp.issparse(M) else M, dtype=np.float64)
    n = X_seen.shape[0]
    a = ad.AnnData(
        X=M,
        var=pd.DataFrame(
            {"ensembl_id": case["ids"]}, index=[f"g{j}" for j in range(len(case["ids"]))]
        ),
    )
    n_counts = None
    with np.errstate(invalid="ignore"):
        totals = X_seen.sum(axis=1)
    if case["obs_counts"] == "sum+":
        n_counts = np.where(np.isfinite(totals), totals, 0) + 3.0
    elif case["obs_counts"] == "random":
        n_counts = rng.uniform(0.5, 1e6, n)
    elif case["obs_counts"] == "zeros":
        n_counts = np.zeros(n)
    if n_counts is not None:
        a.obs["n_counts"] = n_counts
    expected = reference_tokenize(
        X_seen, case["ids"], case["medians"], max_len=case["max_len"],
        chunk_size=case["chunk_size"], n_counts=n_counts, min_overlap=case["min_overlap"],
    )  # fmt: skip
    before = a.copy()
    kwargs = dict(max_len=case["max_len"], chunk_size=case["chunk_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        event("refused" if expected is None else "tokenized")
        if expected is None:
            with pytest.raises(ValueError):
                mt.pp.tokenize(a, vocab=vocab, min_overlap=case["min_overlap"], **kwargs)
            assert "maxtoki_tokens" not in a.obsm and list(a.obs.columns) == list(before.obs)
            return
        mt.pp.tokenize(a, vocab=vocab, min_overlap=case["min_overlap"], **kwargs)
    T = a.obsm["maxtoki_tokens"]
    L = a.obs["maxtoki_n_tokens"].to_numpy()
    got = [T[i, : L[i]].tolist() for i in range(n)]
    assert got == expected
    assert T.shape[1] == max(len(e) for e in expected)
    assert (T[np.arange(T.shape[1])[None, :] >= L[:, None]] == 0).all()  # padding
    np.testing.assert_array_equal(a.obs["maxtoki_empty"], [len(e) == 2 for e in expected])


# --- 2. the prompt builder --------------------------------------------------------------------
@cache
def _prompt_vocab(lo: int, hi: int) -> GeneVocab:
    return GeneVocab.from_genes({f"G{i}": 1.0 for i in range(12)}, time_range=(lo, hi))


@st.composite
def obs_tables(draw):
    n = draw(st.integers(0, 36))
    ages = draw(
        st.one_of(
            st.lists(st.sampled_from([12.0, 24.0, 240.0, 600.0, 900.0]), min_size=n, max_size=n),
            st.lists(st.integers(0, 1200).map(float), min_size=n, max_size=n),
            st.lists(st.sampled_from([12.0, 24.5, float("nan"), 1e4]), min_size=n, max_size=n),
        )
    )
    obs = pd.DataFrame(
        {
            "age_months": ages,
            "donor": draw(st.lists(st.sampled_from(["d0", "d1", "d2"]), min_size=n, max_size=n)),
            "cell_type": draw(st.lists(st.sampled_from(["A", "B"]), min_size=n, max_size=n)),
            "sex": draw(st.lists(st.sampled_from(["f", "m"]), min_size=n, max_size=n)),
        },
        index=[f"c{i}" for i in range(n)],
    )
    if draw(st.booleans()):
        obs["cell_type"] = obs["cell_type"].astype("category")
    return obs


@st.composite
def trajectory_cases(draw):
    obs = draw(obs_tables())
    n = len(obs)
    holdout_kind = draw(st.sampled_from([None, None, "mask", "mapping"]))
    holdout = None
    if holdout_kind == "mask":
        holdout = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif holdout_kind == "mapping":
        holdout = {"cell_type": draw(st.sampled_from(["A", "B", ["A", "B"]]))}
    k_min = draw(st.integers(1, 3))
    return dict(
        obs=obs,
        groupby=draw(
            st.sampled_from([None, "cell_type", ("cell_type", "sex"), "donor", ("donor", "sex")])
        ),
        n_context=draw(st.sampled_from([k_min, (k_min, draw(st.integers(k_min, 3)))])),
        n_prompts=draw(st.sampled_from([None, 0, 5, 40])),
        task=draw(
            st.sampled_from(["TimeBetweenCells", "NextCell", ("TimeBetweenCells", "NextCell")])
        ),
        task_mix=draw(st.sampled_from([0.0, 0.5, 0.8, 1.0])),
        holdout=holdout,
        exclude_times=draw(st.sampled_from([None, None, (0.0, 30.0), (200.0, 700.0)])),
        sort_context=draw(st.booleans()),
        allow_same_time=draw(st.booleans()),
        query_sampling=draw(st.sampled_from(["time_points", "cells"])),
        group_balance=draw(st.sampled_from([None, 0.0, 0.1, 1.0])),
        time_range=draw(st.sampled_from([(-1500, 1499), (-60, 60), (-1000, 1000)])),
        seed=draw(st.integers(0, 1000)),
        cell_lengths=draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)),
        max_length=draw(st.sampled_from([None, 12, 24, 48, 80])),
        max_genes=draw(st.sampled_from([None, 1, 3, 6])),
        truncate=draw(st.booleans()),
        pack=draw(st.booleans()),
    )


def _groups(obs: pd.DataFrame, groupby) -> pd.Series:
    if groupby is None:
        return pd.Series("all", index=obs.index)
    cols = [groupby] if isinstance(groupby, str) else list(groupby)
    return obs[cols].astype(str).agg("|".join, axis=1)


def _check_table(df: pd.DataFrame, case: dict) -> None:
    obs, lo, hi = case["obs"], *case["time_range"]
    k_min, k_max = (
        (case["n_context"],) * 2 if isinstance(case["n_context"], int) else case["n_context"]
    )
    tasks = {case["task"]} if isinstance(case["task"], str) else set(case["task"])
    groups = _groups(obs, case["groupby"])
    times = obs["age_months"]
    held = np.zeros(len(obs), bool)
    if isinstance(case["holdout"], np.ndarray):
        held = case["holdout"]
    elif isinstance(case["holdout"], dict):
        held = obs["cell_type"].isin(np.atleast_1d(case["holdout"]["cell_type"])).to_numpy()
    excluded = np.zeros(len(obs), bool)
    if case["exclude_times"] is not None:
        excluded = times.between(*case["exclude_times"]).to_numpy()
    held = pd.Series(held | excluded, index=obs.index)
    excluded = pd.Series(excluded, index=obs.index)
    train_mask = times.notna().to_numpy() & ~held.to_numpy()
    train_cells = obs.index[train_mask]
    context_cells = {  # the cells a prompt's context may come from, by split
        "train": obs.index[train_mask],
        "eval": obs.index[times.notna().to_numpy() & ~excluded.to_numpy()],
    }
    train = df[df["split"] == "train"]
    n_train = len(train_cells) if case["n_prompts"] is None else case["n_prompts"]
    assert len(train) == n_train
    cycled = case["query_sampling"] == "cells" and case["group_balance"] is None
    if case["n_prompts"] is None and cycled:  # every training cell is the query once
        assert sorted(train["query"]) == sorted(train_cells)
    assert set(df["task"]) <= tasks
    if len(tasks) == 2:
        assert (train["task"] == "TimeBetweenCells").sum() == round(case["task_mix"] * n_train)
    for row in df.itertuples():
        k = row.n_context
        assert k_min <= k <= k_max
        ctx = [getattr(row, f"ctx{j}") for j in range(k)]
        assert all(isinstance(c, str) for c in ctx)
        assert all(pd.isna(getattr(row, f"ctx{j}")) for j in range(k, k_max))
        t = [times[c] for c in ctx]
        t_q = times[row.query]
        if case["sort_context"]:
            assert t == sorted(t)  # context in time order
        if not case["allow_same_time"]:
            assert t_q not in t  # the query's time differs from every context time
        assert row.query not in ctx
        assert {groups[c] for c in [*ctx, row.query]} == {row.group}  # one group, no mixing
        # context time points are distinct when the group has enough usable ones
        pool = [c for c in context_cells[row.split] if groups[c] == row.group and c != row.query]
        usable = {times[c] for c in pool} - (set() if case["allow_same_time"] else {t_q})
        if len(usable) >= k:
            assert len(set(t)) == k
        for j in range(k - 1):
            dt = getattr(row, f"dt{j}")
            assert dt == min(max(round(t[j + 1] - t[j]), lo), hi)
        assert row.dt_query == min(max(round(t_q - t[-1]), lo), hi)
        assert not excluded[ctx].any()  # held-out ages are never context
        if row.split == "train":
            assert not held[[*ctx, row.query]].any()
        else:
            assert held[row.query]


def _expected_prompt(row, cells: dict, vocab: GeneVocab, case: dict):
    """The token layout of DESIGN.md §1 for one row; ``None`` when it cannot fit."""
    cut = case["max_genes"]

    def cell(name):
        c = cells[name]
        return c if cut is None or len(c) - 2 <= cut else [*c[: cut + 1], c[-1]]

    k = row.n_context
    ctx = [cell(getattr(row, f"ctx{j}")) for j in range(k)]
    dts = [int(vocab.time_token_id(int(getattr(row, f"dt{j}")))) for j in range(k - 1)]
    dt_q = int(vocab.time_token_id(int(row.dt_query)))
    query = cell(row.query)
    if row.task == "TimeBetweenCells":
        tail, answer = [vocab.boq_id, *query, vocab.eoq_id], []
    else:
        tail, answer = [vocab.boq_id, dt_q, vocab.eoq_id], query
    total = sum(map(len, ctx)) + k - 1 + len(tail) + len(answer)
    if case["max_length"] is not None and total > case["max_length"]:
        keep = len(ctx[0]) - 2 - (total - case["max_length"])
        if not case["truncate"] or keep < 1:
            return None
        ctx[0] = [*ctx[0][: keep + 1], ctx[0][-1]]
    prompt = list(ctx[0])
    for j in range(1, k):
        prompt += [dts[j - 1], *ctx[j]]
    prompt += tail
    return prompt, answer


@fuzz(120)
@given(trajectory_cases())
def test_prompts_are_well_formed_or_refused(case):
    obs = case["obs"]
    adata = ad.AnnData(obs=obs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = mt.pp.trajectories(
                adata, time_key="age_months", groupby=case["groupby"],
                n_context=case["n_context"], n_prompts=case["n_prompts"], task=case["task"],
                task_mix=case["task_mix"], holdout=case["holdout"], random_state=case["seed"],
                time_range=case["time_range"], exclude_times=case["exclude_times"],
                sort_context=case["sort_context"], allow_same_time=case["allow_same_time"],
                query_sampling=case["query_sampling"], group_balance=case["group_balance"],
            )  # fmt: skip
    except (ValueError, TypeError) as e:
        event("trajectories refused")
        assert str(e)
        return
    event("trajectories built")
    _check_table(df, case)
    assume(len(df) > 0)

    # the prompt dataset and collator on the same table
    vocab = _prompt_vocab(*case["time_range"])
    rng = np.random.default_rng(case["seed"])
    cells = {}
    for name, n_genes in zip(obs.index, case["cell_lengths"], strict=True):
        cells[name] = [vocab.bos_id, *(4 + rng.permutation(12)[:n_genes]).tolist(), vocab.eos_id]
    width = max(map(len, cells.values()))
    mat = np.zeros((len(cells), width), dtype=np.int64)
    for i, c in enumerate(cells.values()):
        mat[i, : len(c)] = c
    tokens = ArrayTokens(mat, [len(c) for c in cells.values()], names=list(cells))
    ds = PromptDataset(
        df, tokens, vocab=vocab, max_length=case["max_length"],
        max_genes_per_cell=case["max_genes"], truncate=case["truncate"],
    )  # fmt: skip
    examples = []
    for i, row in enumerate(df.itertuples()):
        expected = _expected_prompt(row, cells, vocab, case)
        if expected is None:
            event("a prompt too long")
            with pytest.raises(ValueError, match=f"prompt {i}: a prompt needs"):
                ds[i]
            continue
        prompt, answer = expected
        e = ds[i]
        assert e["input_ids"].tolist() == prompt + answer
        assert e["labels"].tolist() == [-100] * len(prompt) + answer
        assert e["eoq_pos"] == len(prompt) - 1 and e["input_ids"][e["eoq_pos"]] == vocab.eoq_id
        ids = e["input_ids"]
        n_time = int(
            (
                (ids >= vocab.time_token_id(case["time_range"][0]))
                & (ids <= vocab.time_token_id(case["time_range"][1]))
            ).sum()
        )
        assert n_time == row.n_context - 1 + (row.task == "NextCell")
        assert (ids == vocab.bos_id).sum() == (ids == vocab.eos_id).sum() == row.n_context + 1
        if case["max_length"] is not None:
            assert len(ids) <= case["max_length"]
        if row.task == "TimeBetweenCells":
            assert e["task"] == 0 and e["time_target"] == row.dt_query
        else:
            assert e["task"] == 1 and math.isnan(e["time_target"])
        examples.append(e)
    if not examples:
        return
    row_len = max(len(e["input_ids"]) for e in examples)
    collate = Collator(pack=case["pack"], max_length=row_len if case["pack"] else None)
    batch = collate(examples)
    ids, pos = batch["input_ids"], batch["position_ids"]
    assert batch["n_tokens"] == sum(len(e["input_ids"]) for e in examples)
    assert int(batch["attention_mask"].sum()) == batch["n_tokens"]
    assert ids.shape[1] <= row_len if case["pack"] else ids.shape == (len(examples), row_len)
    for i, e in enumerate(examples):
        r, c = batch["eoq_index"][i].tolist()
        start = c - e["eoq_pos"]
        n = len(e["input_ids"])
        assert ids[r, start : start + n].tolist() == e["input_ids"].tolist()
        assert batch["labels"][r, start : start + n].tolist() == e["labels"].tolist()
        assert pos[r, start : start + n].tolist() == list(range(n))
        if case["pack"]:
            seq = batch["seq_ids"][r, start : start + n]
            assert (seq == seq[0]).all() and seq[0] >= 0
    torch.testing.assert_close(
        batch["time_target"],
        torch.tensor([e["time_target"] for e in examples], dtype=torch.float32),
        equal_nan=True,
    )


# --- 3. the config loaders --------------------------------------------------------------------
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1e-3, 0.95, 2.0, -0.5, 1.0]),
    st.text(max_size=6),
    st.sampled_from(["ddp", "fsdp2", "bf16", "raise", "skip", "1e-3", "auto", "llama3"]),
    st.lists(st.floats(-2, 2, allow_nan=False), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(0, 5), max_size=2),
)
#: values a config field plausibly holds (valid or just off): most configs should load
PLAUSIBLE = st.one_of(
    st.integers(0, 64),
    st.floats(0, 1.5),
    st.booleans(),
    st.sampled_from([1, 2, 1.0, 2.0, True, "1", "2"]),  # stage: ints, and what is not
    st.lists(st.floats(-0.2, 1.2), min_size=2, max_size=2),
)
TRAIN_FIELDS = TrainConfig.field_names()
TRAIN_KEYS = st.sampled_from([*TRAIN_FIELDS, "learning_rate", "Steps"])  # and two unknown
#: messages may name a field by the rule it breaks
TRAIN_ALIASES = {"betas": ["beta"], "eps": ["eps"]}


def _names_a_field(message: str, fields, aliases=None) -> bool:
    aliases = aliases or {}
    return any(f in message or any(a in message for a in aliases.get(f, ())) for f in fields)


@fuzz(250)
@given(st.dictionaries(TRAIN_KEYS, st.one_of(ANY_VALUE, PLAUSIBLE, PLAUSIBLE), max_size=3))
@example({"stage": True})  # found by this test (then fixed): a bool or float passed as stage 1
@example({"stage": 1.0})
@example({"betas": [2.0, 0.5]})  # … and optimizer settings AdamW refuses at the first step
@example({"eps": -1.0})
@example({"peak_flops": -5.0})
def test_train_config_loads_round_trips_or_names_the_field(tmp_path_factory, changes):
    try:
        cfg = TrainConfig.from_dict(changes)
    except (ValueError, TypeError) as e:
        event("TrainConfig refused")
        unknown = set(changes) - set(TRAIN_FIELDS)
        assert _names_a_field(str(e), changes, TRAIN_ALIASES) or (
            unknown and "unknown training config keys" in str(e)
        ), (changes, str(e))
        return
    event("TrainConfig loaded")
    hints = {"stage": int, "steps": int, "lr": float, "precision": str, "quiet": bool}
    for name, kind in hints.items():  # the declared types, not merely equal values (True == 1)
        assert type(getattr(cfg, name)) is kind, (name, getattr(cfg, name))
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    model = torch.nn.Linear(2, 2)  # a config that loads also builds its optimizer
    torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    assert cfg.eps > 0 and (cfg.peak_flops is None or cfg.peak_flops > 0)


@fuzz(60)
@given(st.dictionaries(st.sampled_from(TRAIN_FIELDS), st.one_of(ANY_VALUE, PLAUSIBLE), max_size=3))
def test_train_config_yaml_and_overrides_agree_with_from_dict(tmp_path_factory, changes):
    folder = tmp_path_factory.mktemp("cfg", numbered=True)
    path = folder / "train.yaml"
    try:
        text = yaml.safe_dump(changes)
    except yaml.YAMLError:
        return
    path.write_text(text)
    try:
        expected = TrainConfig.from_dict(yaml.safe_load(text) or {})
    except (ValueError, TypeError):
        expected = None
    try:
        got = TrainConfig.from_yaml(path)
    except (ValueError, TypeError) as e:
        assert expected is None or (expected.restrict_paths and "outside" in str(e)), str(e)
        return
    assert expected is not None
    for f in TRAIN_FIELDS:  # paths are resolved against the folder; the rest is identical
        if f not in ("tokens", "prompts", "vocab", "out_dir", "init_from", "resume"):
            assert getattr(got, f) == getattr(expected, f), f
    # the same changes as key=value overrides of an empty file
    path.write_text("")
    try:
        overrides = [f"{k}={json.dumps(v)}" for k, v in changes.items()]
    except (TypeError, ValueError):
        return
    try:  # JSON is read as YAML here: values may differ, but errors must stay clean
        over = TrainConfig.from_yaml(path, overrides)
    except (ValueError, TypeError) as e:
        assert str(e)
        return
    assert isinstance(over, TrainConfig)


BASE_MODEL = MaxTokiConfig.preset("tiny").to_dict()
MODEL_FIELDS = [*BASE_MODEL, "rope_parameters", "auto_map", "model_type", "hidden_act"]
#: derived quantities a message may name instead of the field
MODEL_ALIASES = {
    "hidden_size": ["head dim"],
    "num_attention_heads": ["head dim"],
    "head_dim": ["head dim"],
    "time_token_start_id": ["time-token range", "time tokens"],
    "n_time_tokens": ["time-token range", "time tokens"],
    "rope_parameters": ["rope_scaling", "rope_theta"],
    "auto_map": ["remote code"],
}


@fuzz(250)
@example({"rope_parameters": False})  # found by this test (then fixed): "'bool' not iterable"
@example({"rope_parameters": "0"})
@given(
    st.dictionaries(
        st.sampled_from(MODEL_FIELDS),
        st.one_of(
            ANY_VALUE,
            st.fixed_dictionaries(
                {
                    "rope_type": st.sampled_from(["llama3", "default", "yarn"]),
                    "factor": st.sampled_from([0.5, 1.0, 8.0]),
                    "low_freq_factor": st.just(1.0),
                    "high_freq_factor": st.sampled_from([0.5, 4.0]),
                    "original_max_position_embeddings": st.sampled_from([0, 8192]),
                }
            ),
        ),
        max_size=3,
    )
)
def test_model_config_loads_round_trips_or_names_the_field(tmp_path_factory, changes):
    values = {**BASE_MODEL, **changes}
    try:
        cfg = MaxTokiConfig.from_dict(values)
    except (ValueError, TypeError) as e:
        event("MaxTokiConfig refused")
        assert _names_a_field(str(e), changes, MODEL_ALIASES), (changes, str(e))
        return
    event("MaxTokiConfig loaded")
    assert MaxTokiConfig.from_dict(cfg.to_dict()) == cfg
    assert MaxTokiConfig.from_dict(cfg.to_hf_dict()) == cfg
    assert MaxTokiConfig.from_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg
    folder = tmp_path_factory.mktemp("model_cfg", numbered=True)
    cfg.save(folder / "config.json")
    assert MaxTokiConfig.load(folder) == cfg
