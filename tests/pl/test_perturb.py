"""mt.pl.perturb: the bars are the table of mt.tl.perturb, in its units and order."""

import matplotlib.colors as mcolors
import numpy as np

import maxtoki as mt


def _bars(ax):
    (bars,) = [c for c in ax.containers if hasattr(c, "patches")]
    return bars


def test_bars_are_the_table_sorted_with_sem(perturbed):
    table = mt.get.perturb(perturbed).sort_values("mean_shift_months", kind="stable")
    ax = mt.pl.perturb(perturbed, show=False)
    bars = _bars(ax)
    widths = np.array([p.get_width() for p in bars.patches])
    np.testing.assert_allclose(widths, table["mean_shift_months"].to_numpy() / 12)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table["gene"])
    # error bars: half-width s.e.m. in years
    segments = bars.errorbar.lines[2][0].get_segments()
    half = np.array([abs(s[1][0] - s[0][0]) / 2 for s in segments])
    np.testing.assert_allclose(half, np.nan_to_num(table["sem_months"].to_numpy() / 12))
    # default colours by direction
    red, blue = mcolors.to_rgba("#d1495b"), mcolors.to_rgba("#30638e")
    for p, v in zip(bars.patches, widths, strict=True):
        assert p.get_facecolor() == (red if v >= 0 else blue)
    assert "overexpress" in ax.get_xlabel() and "years" in ax.get_xlabel()


def test_months_stars_and_top_genes(perturbed):
    table = mt.get.perturb(perturbed)
    ax = mt.pl.perturb(perturbed, unit="months", alpha=0.5, n_genes=3, show=False)
    top = table.loc[table["mean_shift_months"].abs().sort_values(ascending=False).index[:3]]
    top = top.sort_values("mean_shift_months")
    widths = [p.get_width() for p in _bars(ax).patches]
    np.testing.assert_allclose(widths, top["mean_shift_months"].to_numpy())
    expected = int((top["pval_adj"] < 0.5).sum())
    assert sum(t.get_text().startswith("*") for t in ax.texts) == expected


def test_colour_by_a_var_column_with_a_partial_palette(perturbed):
    ax = mt.pl.perturb(
        perturbed, color="gene_kind", palette={"age_tf": "black"}, gene_symbols="ensembl_id",
        show=False,
    )  # fmt: skip
    table = mt.get.perturb(perturbed).sort_values("mean_shift_months", kind="stable")
    kinds = perturbed.var.loc[table["gene"], "gene_kind"].astype(str).to_numpy()
    faces = [p.get_facecolor() for p in _bars(ax).patches]
    for kind, face in zip(kinds, faces, strict=True):
        assert (face == mcolors.to_rgba("black")) == (kind == "age_tf")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == set(kinds) and ax.get_legend().get_title().get_text() == "gene_kind"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == list(perturbed.var.loc[table["gene"], "ensembl_id"])


def test_deleted_genes_no_cell_has_are_left_out(perturbed):
    adata = perturbed.copy()
    table = adata.uns["maxtoki_perturb"]["table"]
    table["mean_shift_months"] = table["mean_shift_months"].copy()
    table["mean_shift_months"][0] = np.nan
    ax = mt.pl.perturb(adata, show=False)
    assert len(_bars(ax).patches) == len(table["gene"]) - 1
    assert str(table["gene"][0]) not in [t.get_text() for t in ax.get_yticklabels()]


def test_show_false_returns_axes_and_ax_is_used(perturbed):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert mt.pl.perturb(perturbed, ax=ax, show=False) is ax


def test_reads_another_key(out):
    adata = out.adata.copy()
    firsts = [str(g[0]) for g in mt.get.tokens(adata, max_genes=1)]  # Ensembl IDs
    top = max(set(firsts), key=firsts.count)  # the top-ranked gene of most cells
    gene = str(adata.var_names[adata.var["ensembl_id"] == top][0])
    with mt.settings.override(verbosity=1):
        mt.tl.perturb(adata, model=out.model, vocab=out.vocab, genes=[gene], kind="delete",
                      n_cells=10, n_contexts=1, device="cpu", key_added="del")  # fmt: skip
    ax = mt.pl.perturb(adata, key="del_perturb", show=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == [gene]
    assert "delete" in ax.get_xlabel()
