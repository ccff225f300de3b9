import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import maxtoki as mt
from maxtoki.get._attention import attention_heads as get_heads


def test_attention_heads_heatmap(out):
    heads = get_heads(out.adata)
    ax = mt.pl.attention_heads(out.adata, show=False)
    assert len(ax.images) == 1
    grid = ax.images[0].get_array()
    assert grid.shape == (heads["layer"].nunique(), heads["head"].nunique())
    np.testing.assert_allclose(
        grid[0, :], heads.sort_values("head")["log2_enrichment"].to_numpy(), rtol=1e-6
    )
    assert ax.get_xlabel() == "head" and ax.get_ylabel() == "layer"
    assert len(ax.texts) == len(heads)  # one value per head
    assert "is_tf" in ax.get_title()
    assert ax.figure.axes[1].get_ylabel() == "log2 enrichment"  # colour bar


def test_attention_heads_marks_significant_heads(out):
    adata = out.adata.copy()
    adata.uns["maxtoki_attention"] = dict(adata.uns["maxtoki_attention"])
    table = dict(adata.uns["maxtoki_attention"]["heads"])
    table["pval"] = np.array([1e-6, 0.5])
    adata.uns["maxtoki_attention"]["heads"] = table
    ax = mt.pl.attention_heads(adata, value="enrichment", show=False)
    marked = [t.get_text() for t in ax.texts if "*" in t.get_text()]
    assert len(marked) == 1 and marked[0].endswith("***")
    assert "1/2 heads" in ax.get_title()
    ax = mt.pl.attention_heads(adata, correction="none", alpha=1e-7, annotate=False, show=False)
    assert ax.texts == [] or all("*" not in t.get_text() for t in ax.texts)


def test_attention_genes_per_head(out):
    fig = mt.pl.attention_genes(out.adata, show=False)
    assert isinstance(fig, Figure)
    columns = list(out.adata.uns["maxtoki_attention"]["columns"])
    assert [a.get_title() for a in fig.axes] == columns
    for a, col in zip(fig.axes, columns, strict=True):
        assert len(a.patches) == 10
        values = out.adata.varm["maxtoki_attention"][:, columns.index(col)]
        top = out.adata.var_names[np.argsort(-np.nan_to_num(values, nan=-np.inf))[0]]
        assert a.get_yticklabels()[0].get_text() == top
    _, ax = plt.subplots()
    got = mt.pl.attention_genes(out.adata, heads="L0H1", n_genes=5, ax=ax, show=False)
    assert got is ax and len(ax.patches) == 5 and ax.get_title() == "L0H1"


def test_attention_bad_input(out):
    bare = out.adata.copy()
    del bare.uns["maxtoki_attention"]
    with pytest.raises(ValueError, match=r"mt\.tl\.attention"):
        mt.pl.attention_heads(bare, show=False)
    with pytest.raises(ValueError, match=r"mt\.tl\.attention"):
        mt.pl.attention_genes(bare, show=False)
    with pytest.raises(ValueError, match="heads"):
        mt.pl.attention_genes(out.adata, heads="L9H9", show=False)
    with pytest.raises(ValueError, match="value"):
        mt.pl.attention_heads(out.adata, value="nope", show=False)
