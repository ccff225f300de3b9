"""Set-up of the mt.pl tests: the Agg backend, the shared real outputs, figures closed."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from pl_outputs import outputs


@pytest.fixture(scope="session")
def out():
    """Atlas → tokens → a tiny model → every tool the plots draw (built once)."""
    return outputs()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def perturbed(out):
    """A copy of the shared cells after mt.tl.perturb (overexpress 6 TFs, 30 cells)."""
    import maxtoki as mt

    adata = out.adata.copy()
    var = adata.var
    genes = list(var.index[var["gene_kind"].isin(["age_tf", "other_tf"])][:6])
    with mt.settings.override(verbosity=1):
        mt.tl.perturb(
            adata, model=out.model, vocab=out.vocab, genes=genes, kind="overexpress",
            n_cells=30, n_contexts=1, device="cpu",
        )  # fmt: skip
    return adata
