"""Write tests/data/golden_pbmc.h5ad and golden_pbmc_tokens.npz from ../shared/reference.

The in-repo golden set: the first 300 cells (rows 0–299, file order) of
``golden/celltypist_pbmc/counts.h5ad`` and the official MaxToki tokenizer's tokens of exactly
those cells, copied from ``expected_tokens.npz`` (not recomputed). Run from the repository root:
``python tests/data/make_golden_pbmc.py``. Deterministic; the output is checked against the
source by ``tests/pp/test_golden.py::test_subset_equals_the_reference_set``.
"""

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "shared" / "reference" / "golden" / "celltypist_pbmc"
N_CELLS = 300


def main() -> None:
    full = ad.read_h5ad(SOURCE / "counts.h5ad")
    with np.load(SOURCE / "expected_tokens.npz") as z:
        tokens, lengths, cell_id = z["tokens"], z["lengths"], z["cell_id"]
    assert (full.obs["cell_id"].to_numpy() == cell_id).all()

    rows = np.arange(N_CELLS)
    sub = full[rows].copy()
    # genes with no count in any kept cell add nothing to a token or to a total: drop them;
    # every other gene column stays (in the vocabulary or not), so X sums to obs['n_counts']
    X = sp.csr_matrix(sub.X)
    detected = np.flatnonzero(np.diff(sp.csc_matrix(X).indptr) > 0)
    sub = sub[:, detected].copy()
    X = sp.csr_matrix(sub.X)
    assert np.array_equal(X.data, np.round(X.data)) and X.data.max() < 2**16
    X = sp.csr_matrix((X.data.astype(np.uint16), X.indices, X.indptr), shape=X.shape)
    X.sort_indices()
    sub.X = X
    # n_counts is copied as it is (totals over all genes, as the official tokenizer saw them;
    # they differ from the integer row sums by float noise below 1e-10)
    sub.obs = sub.obs[["n_counts", "cell_id"]].copy()
    sub.var = sub.var[["ensembl_id"]].copy()  # the index holds the gene symbols already
    totals = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
    np.testing.assert_allclose(totals, sub.obs["n_counts"], rtol=0, atol=1e-6)

    # gzip with the byte-shuffle filter (a standard HDF5 filter): a third smaller than plain gzip
    ad.io.write_h5ad(
        HERE / "golden_pbmc.h5ad", sub, compression="gzip", compression_opts=9, shuffle=True
    )

    offsets = np.concatenate([[0], np.cumsum(lengths)])
    kept = tokens[: offsets[N_CELLS]]
    assert kept.max() < 2**16  # uint16 holds every id of the 20,275-token vocabulary
    np.savez_compressed(
        HERE / "golden_pbmc_tokens.npz",
        cell_id=cell_id[rows],
        lengths=lengths[rows],
        tokens=kept.astype(np.uint16),
    )


if __name__ == "__main__":
    main()
