"""Bad input to mt.get: clear errors that name the fix, and the input left unchanged."""

from __future__ import annotations

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# get ----------------------------------------------------------------------------------------
T = "get.tokens"
case(
    T,
    "before-tokenize",
    raw,
    call(T),
    match=r"obsm\['maxtoki_tokens'\] not found; run `mt\.pp\.tokenize` first",
)
case(T, "key-unknown", tok, call(T, key="tokens"), match=r"obsm\['tokens'\] not found; run")
case(T, "output-unknown", tok, call(T, output="dict"), match=r"output must be 'list', 'wide'")
for bad in (0, "3"):
    case(
        T, f"max_genes={bad!r}", tok, call(T, max_genes=bad), match=r"max_genes must be a positive"
    )
case(
    T,
    "vocab-of-another-model",
    tok,
    call(T, vocab=fx().other_medians),
    match=r"made with vocabulary \w+, this one is \w+; decode with the vocabulary",
)
case(T, "vocab-dict", tok, call(T, vocab={}), TypeError, r"vocab must be a maxtoki\.pp\.GeneVocab")
case(
    T,
    "gene_symbols-missing",
    tok,
    call(T, gene_symbols="symbol"),
    match=r"var has no column 'symbol' .*; pass",
)
case(
    T,
    "no-vocab-and-no-token-ids",
    lambda: drop_var(without_uns(tok(), "maxtoki_tokens"), "maxtoki_token_id"),
    call(T),
    match=r"var\['maxtoki_token_id'\] not found .* run `mt\.pp\.tokenize` first or pass vocab=",
)
works(
    T,
    "long-with-duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T, output="long"),
    unchanged=True,
)
works(T, "backed", lambda: backed("tok"), call(T, output="wide"), unchanged=True)
works(T, "MuData", lambda: mudata_of(tok()), call(T), unchanged=True)

for T, tool, key in (
    ("get.age_acceleration", "age_acceleration", "maxtoki_age_acceleration"),
    ("get.attention_heads", "attention", "maxtoki_attention"),
    ("get.evaluate", "evaluate", "maxtoki_evaluate"),
    ("get.perturb", "perturb", "maxtoki_perturb"),
):
    msg = rf"uns has no '{key}' table: run `mt\.tl\.{tool}` first \(or pass the key it wrote"
    case(T, f"before-tl.{tool}", tok, call(T), match=msg)
    case(T, "key-unknown", done, call(T, key="nope"), match=r"uns has no 'nope' table: run")
    case(T, "slot-overwritten", lambda k=key: with_uns(done(), k, "garbage"), call(T), match=msg)
    case(
        T,
        "table-damaged",
        lambda k=key: with_uns(done(), k, {"table": 5, "heads": 5}),
        call(T),
        match=rf"uns\['{key}'\]\['\w+'\] is damaged.* re-run `mt\.tl\.{tool}`",
    )
    works(T, "MuData", lambda: mudata_of(done()), call(T), unchanged=True)
    works(T, "backed", lambda: backed("tok"), call(T), unchanged=True)


@pytest.mark.parametrize("c", cases_of("get"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)


def test_every_public_function_is_covered():
    check_coverage("get")
