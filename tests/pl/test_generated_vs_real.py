import pytest
from matplotlib.collections import PathCollection

import maxtoki as mt


def test_generated_vs_real_by_origin(out):
    ax = mt.pl.generated_vs_real(out.adata, out.generated, basis="pca", show=False)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in points] == [out.adata.n_obs, out.generated.n_obs]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"real ({out.adata.n_obs})", f"generated ({out.generated.n_obs})"]
    assert ax.get_xlabel().startswith("PC1")
    assert "PCA" in ax.get_title() and "neighbours" in ax.get_title()


def test_generated_vs_real_by_cell_type(out):
    ax = mt.pl.generated_vs_real(
        out.adata, out.generated, color="cell_type", basis="pca", representation="expression",
        n_real=100, show=False,
    )  # fmt: skip
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    n_real_types = out.adata.obs["cell_type"].nunique()
    n_gen_types = out.generated.obs["cell_type"].nunique()
    assert len(points) == n_real_types + n_gen_types
    assert sum(len(c.get_offsets()) for c in points) == 100 + out.generated.n_obs
    assert "all genes" in ax.get_title()


def test_generated_vs_real_bad_input(out):
    with pytest.raises(ValueError, match="share"):
        mt.pl.generated_vs_real(out.adata[:, :1].copy(), out.generated[:, 1:].copy(), show=False)
    untokenized = out.adata.copy()
    del untokenized.obsm["maxtoki_tokens"]
    with pytest.raises(ValueError, match=r"mt\.pp\.tokenize"):
        mt.pl.generated_vs_real(untokenized, out.generated, basis="pca", show=False)
    with pytest.raises(ValueError, match="color"):
        mt.pl.generated_vs_real(out.adata, out.generated, color="condition", show=False)


def test_without_scanpy_says_how_to_install_it(out, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scanpy", None)
    hint = r"pip install 'maxtoki\[scanpy\]' \(or pip install scanpy\)"
    with pytest.raises(ImportError, match=hint):
        mt.pl.generated_vs_real(out.adata, out.generated, show=False)
