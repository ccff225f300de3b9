"""Bad input to mt.pl: clear errors that name the fix, and the input left unchanged."""

from __future__ import annotations

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# pl -----------------------------------------------------------------------------------------
UNIT = r"unit must be 'years' or 'months'"
T = "pl.predicted_age"
case(
    T,
    "before-predict_time",
    tok,
    call(T),
    match=r"adata\.obs has no \['maxtoki_age'\]; run `mt\.tl\.predict_time` first",
)
case(
    T,
    "color-unknown",
    done,
    call(T, color="tissue"),
    match=r"adata\.obs has no \['tissue'\]; pass an existing obs column as `color`",
)
case(T, "groupby-unknown", done, call(T, groupby="tissue"), match=r"as `groupby`")
case(
    T,
    "groupby-with-ax",
    done,
    lambda d: mt.pl.predicted_age(d, groupby="cell_type", ax=new_axes(), show=False),
    match=r"do not pass `ax`",
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
case(T, "ncols-0", done, call(T, groupby="cell_type", ncols=0), match=r"ncols " + NOT_INT)
case(
    T,
    "predictions-all-NaN",
    lambda: with_obs(done(), maxtoki_age=np.nan),
    call(T),
    match=r"no cell has both a finite",
)
works(T, "categorical-color", done, call(T, color="cell_type"), unchanged=True)
works(
    T,
    "string-color",
    lambda: as_strings(done(), "cell_type"),
    call(T, color="cell_type"),
    unchanged=True,
)
works(T, "numeric-color", done, call(T, color="n_counts"), unchanged=True)
works(T, "backed", lambda: backed("tok"), call(T), unchanged=True)

T = "pl.age_acceleration"
case(T, "before-tl.age_acceleration", tok, call(T), match=r"run `mt\.tl\.age_acceleration` first")
case(T, "groupby-unknown", done, call(T, groupby="disease"), match=r"as `groupby`")
case(T, "kind-unknown", done, call(T, kind="bar"), match=r"kind must be 'violin' or 'box'")
case(
    T,
    "stratum-not-stratified",
    done,
    call(T, stratum="fibroblast"),
    match=r"is not stratified; pass `stratum=None`",
)
case(
    T,
    "order-unknown-group",
    done,
    call(T, order=["flu"]),
    match=r"order names groups \['flu'\] that are not in obs\['condition'\]; pass",
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
works(T, "string-groupby", lambda: as_strings(done(), "condition"), call(T), unchanged=True)

T = "pl.attention_heads"
case(T, "before-tl.attention", tok, call(T), match=r"run `mt\.tl\.attention` first")
case(
    T,
    "value-unknown",
    done,
    call(T, value="nope"),
    match=r"has no \['nope'\]; pass a column of `mt\.get\.attention_heads` as `value`",
)
case(
    T,
    "correction-unknown",
    done,
    call(T, correction="bonferroni"),
    match=r"correction must be 'bh' or 'none'",
)
for bad in (2, "0.05"):
    case(T, f"alpha={bad!r}", done, call(T, alpha=bad), match=r"alpha must (be a number|lie) in")

T = "pl.attention_genes"
case(T, "before-tl.attention", tok, call(T), match=r"run `mt\.tl\.attention` first")
case(T, "n_genes-0", done, call(T, n_genes=0), match=r"n_genes " + NOT_INT)
case(T, "heads-unknown", done, call(T, heads=["L9H9"]), match=r"heads \['L9H9'\] are not in")
case(T, "gene_set-unknown", done, call(T, gene_set="tf"), match=r"'tf'.*pass")
case(
    T,
    "gene_symbols-unknown",
    done,
    call(T, gene_symbols="symbol"),
    match=r"adata\.var has no \['symbol'\]; pass a var column of gene names",
)
case(
    T,
    "several-heads-with-ax",
    done,
    lambda d: mt.pl.attention_genes(d, heads=["L0H0", "L0H1"], ax=new_axes(), show=False),
    match=r"pass one head to draw into `ax`",
)

T = "pl.evaluation"
case(T, "before-tl.evaluate", tok, call(T), match=r"run `mt\.tl\.evaluate` first")
case(
    T, "metric-unknown", done, call(T, metric="rmse"), match=r"pass one of its columns as `metric`"
)
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
case(
    T,
    "metric-without-values",
    lambda: mt.get.evaluate(fx().done).assign(pearson_r=np.nan),
    call(T, metric="pearson_r"),
    match=r"no row of the table has a value for 'pearson_r'; pass",
)
works(T, "the-table", lambda: mt.get.evaluate(fx().done), call(T), unchanged=True)

T = "pl.explore"
case(
    T,
    "groupby-unknown",
    tok,
    call(T, groupby="tissue"),
    match=r"pass existing obs columns as `groupby`",
)
for bad in (0, "20"):
    case(T, f"n_top_genes={bad!r}", tok, call(T, n_top_genes=bad), match=r"n_top_genes " + NOT_INT)
case(T, "gene_symbols-unknown", tok, call(T, gene_symbols="symbol"), match=r"var column of names")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(T, "temperature-str", tok, call(T, temperature="hot"), match=r"temperature")

T = "pl.generated_vs_real"
case(
    T,
    "generated-list",
    tok,
    lambda d: mt.pl.generated_vs_real(d, [1], show=False),
    TypeError,
    TYPE_MSG,
)
case(
    T,
    "generated-0-cells",
    tok,
    lambda d: mt.pl.generated_vs_real(d, no_cells(fx().generated), show=False),
    match=r"need cells",
)
case(T, "basis-unknown", tok, call(T, basis="tsne"), match=r"basis must be 'auto', 'umap' or 'pca'")
case(
    T,
    "representation-unknown",
    tok,
    call(T, representation="raw"),
    match=r"representation must be 'top_genes' or 'expression'",
)
case(T, "color-unknown", tok, call(T, color="tissue"), match=r"'tissue'.*pass")
for name, bad in (("n_real", 0), ("n_real", -1), ("n_comps", 0)):
    case(T, f"{name}={bad!r}", tok, call(T, **{name: bad}), match=rf"{name} " + NOT_INT)
works(
    T,
    "generated-any-AnnData",
    tok,
    lambda d: mt.pl.generated_vs_real(d, fx().raw[:20], show=False),
    unchanged=True,
)
works(
    T,
    "string-color",
    lambda: as_strings(tok(), "cell_type"),
    call(T, color="cell_type"),
    unchanged=True,
)

T = "pl.trajectory"
case(
    T,
    "prompts-list",
    tok,
    lambda d: mt.pl.trajectory(d, [1], show=False),
    TypeError,
    r"prompts must be the DataFrame of `mt\.pp\.trajectories`",
)
case(
    T,
    "prompts-missing-columns",
    tok,
    lambda d: mt.pl.trajectory(d, pd.DataFrame({"a": [1]}), show=False),
    match=r"prompts has no \['ctx0', 'query'\]; pass a table from `mt\.pp\.trajectories`",
)
case(T, "row-out-of-range", tok, call(T, row=99), match=r"row 99 is out of range for a table of 6")
case(
    T,
    "row-unknown-label",
    tok,
    call(T, row="nope"),
    match=r"row 'nope' is neither a position nor an index label",
)
case(T, "row-empty", tok, call(T, row=[]), match=r"`row` names no prompt")
case(T, "time_key-missing", tok, call(T, time_key="age"), match=r"pass `time_key=`")
case(
    T,
    "generated-not-generated",
    tok,
    call(T, generated=fx().raw),
    match=r"pass the AnnData returned by `mt\.tl\.generate`",
)
case(
    T,
    "duplicated-obs-names",
    lambda: dup_obs_names(tok()),
    call(T),
    match=r"obs_names are not unique.*obs_names_make_unique",
)
case(T, "unit-unknown", tok, call(T, unit="days"), match=UNIT)


def new_axes():
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def new_figure():
    import matplotlib.pyplot as plt

    return plt.figure()


T = "pl.perturb"
case(T, "before-tl.perturb", tok, call(T), match=r"run `mt\.tl\.perturb` first")
case(T, "key-unknown", done, call(T, key="nope"), match=r"uns has no 'nope' table: run `mt\.tl")
case(
    T,
    "color-unknown",
    done,
    call(T, color="role"),
    match=r"adata\.var has no \['role'\]; pass an existing var column as `color`",
)
case(T, "gene_symbols-unknown", done, call(T, gene_symbols="symbol"), match=r"`gene_symbols`")
case(T, "unit-unknown", done, call(T, unit="days"), match=UNIT)
for bad in (0, 1.5, "0.05"):
    case(T, f"alpha={bad!r}", done, call(T, alpha=bad), match=r"alpha must lie in \(0, 1\)")
case(T, "n_genes=0", done, call(T, n_genes=0), match=r"n_genes " + NOT_INT)


def _no_shift():
    d = done()
    d.uns["maxtoki_perturb"]["table"]["mean_shift_months"][:] = np.nan
    return d


case(T, "no-gene-with-a-shift", _no_shift, call(T), match=r"no gene in uns\['maxtoki_perturb'\]")
works(T, "color-by-var", done, call(T, color="gene_kind"), unchanged=True)
for name, bad in (("int", 3), ("list", ["a.png"]), ("empty", "")):
    case(
        T,
        f"save-{name}",
        done,
        call(T, save=bad),
        TypeError,
        r"save must be True, a file name or a path \(or None\)",
    )

T = "pl.savefig"
for name, bad in (("list", lambda: [1]), ("None", lambda: None), ("str", lambda: "fig")):
    case(
        T,
        f"{name}-instead-of-figure",
        bad,
        lambda f: mt.pl.savefig(f, tmp_root() / "x.png"),
        TypeError,
        r"expected a matplotlib Figure or Axes",
    )
case(
    T,
    "name-None",
    new_figure,
    lambda f: mt.pl.savefig(f, None),
    TypeError,
    r"name must be a file name or path",
)
case(
    T,
    "dpi-negative",
    new_figure,
    lambda f: mt.pl.savefig(f, tmp_root() / "x.png", dpi=-1),
    match=r"dpi must be positive",
)
works(T, "axes", new_axes, lambda a: mt.pl.savefig(a, tmp_root() / "figs" / "axes"))

T = "pl.training_curves"
HIST = lambda: fx().history.copy()  # noqa: E731
case(
    T,
    "history-list",
    lambda: [1],
    lambda h: mt.pl.training_curves(h, show=False),
    TypeError,
    r"history must be the DataFrame of `mt\.tl\.train` or a path",
)
case(
    T,
    "history-missing-file",
    lambda: tmp_root() / "nope" / "metrics.jsonl",
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"does not exist; pass a run's metrics\.jsonl",
)
case(
    T,
    "no-loss-columns",
    lambda: HIST().drop(columns="loss"),
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"has none of the loss columns",
)
case(
    T,
    "empty-history",
    lambda: HIST().iloc[:0],
    lambda h: mt.pl.training_curves(h, show=False),
    match=r"(no rows|empty)",
)
case(
    T,
    "x-unknown",
    HIST,
    lambda h: mt.pl.training_curves(h, x="time", show=False),
    match=r"x must be 'step' or 'elapsed_s'",
)
for bad in (0, -1, "3"):
    case(
        T,
        f"smooth={bad!r}",
        HIST,
        lambda h, b=bad: mt.pl.training_curves(h, smooth=b, show=False),
        match=r"smooth must be a positive integer or None",
    )
case(
    T, "unit-unknown", HIST, lambda h: mt.pl.training_curves(h, unit="days", show=False), match=UNIT
)
case(
    T,
    "one-ax",
    HIST,
    lambda h: mt.pl.training_curves(h, ax=[new_axes()], show=False),
    match=r"pass two Axes as `ax`",
)
works(T, "the-history", HIST, lambda h: mt.pl.training_curves(h, show=False), unchanged=True)


@pytest.mark.parametrize("c", cases_of("pl"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)


def test_every_public_function_is_covered():
    check_coverage("pl")
