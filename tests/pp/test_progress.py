"""Progress bars of the long pp/datasets calls: shown for multi-chunk inputs, off on request."""

import numpy as np
import pytest
import scipy.sparse as sp

import maxtoki as mt
from maxtoki.datasets import _atlas_counts


@pytest.fixture(scope="module")
def atlas_and_vocab():
    with mt.settings.override(verbosity=0):
        adata = mt.datasets.aging_atlas(
            n_donors=4, n_cells_per_donor=10, n_genes=200, n_cell_types=3, seed=0
        )
        vocab = mt.pp.GeneVocab.from_genes(mt.pp.gene_medians(adata))
    return adata, vocab


def _bar_lines(err: str, desc: str) -> list[str]:
    """The bar's redraws (tqdm separates them with carriage returns), e.g. 'tokenize: 50%|…'."""
    return [part for part in err.replace("\n", "\r").split("\r") if part.startswith(f"{desc}:")]


def _no_bar(err: str) -> bool:
    """Nothing from tqdm: bars redraw with carriage returns (the log lines stay)."""
    return "\r" not in err and "it/s" not in err and "cell/s" not in err


def test_tokenize_shows_a_bar_for_several_chunks(atlas_and_vocab, capsys):
    adata, vocab = atlas_and_vocab
    mt.pp.tokenize(adata.copy(), vocab=vocab, chunk_size=16)
    lines = _bar_lines(capsys.readouterr().err, "tokenize")
    assert lines and "/40" in lines[0]  # 40 cells in total
    with mt.settings.override(progress=False):
        mt.pp.tokenize(adata.copy(), vocab=vocab, chunk_size=16)
    assert _no_bar(capsys.readouterr().err)
    mt.pp.tokenize(adata.copy(), vocab=vocab)  # one chunk: not worth a bar
    assert _no_bar(capsys.readouterr().err)


def test_bars_follow_verbosity_and_tokens_do_not_change(atlas_and_vocab, capsys):
    adata, vocab = atlas_and_vocab
    mt.settings.verbosity = 0  # below info: no bar either (settings.show_progress)
    a, b = adata.copy(), adata.copy()
    mt.pp.tokenize(a, vocab=vocab, chunk_size=16)
    mt.pp.tokenize(b, vocab=vocab)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(a.obsm["maxtoki_tokens"], b.obsm["maxtoki_tokens"])


def test_tokenize_corpus_bar(atlas_and_vocab, tmp_path, capsys):
    adata, vocab = atlas_and_vocab
    path = tmp_path / "atlas.h5ad"
    adata.write_h5ad(path)
    mt.pp.tokenize_corpus(path, tmp_path / "store", vocab=vocab, chunk_size=16)
    lines = _bar_lines(capsys.readouterr().err, "tokenize_corpus")
    assert lines and "/40" in lines[0]
    with mt.settings.override(progress=False):
        mt.pp.tokenize_corpus(path, tmp_path / "quiet", vocab=vocab, chunk_size=16)
    assert _no_bar(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("method", "descs"),
    [("exact", ["gene medians 1/2", "gene medians 2/2"]), ("histogram", ["gene medians"])],
)
def test_gene_medians_bar(atlas_and_vocab, capsys, method, descs):
    adata, _ = atlas_and_vocab
    mt.pp.gene_medians(adata, chunk_size=16, method=method)
    err = capsys.readouterr().err
    for desc in descs:
        assert _bar_lines(err, desc), desc
    with mt.settings.override(progress=False):
        mt.pp.gene_medians(adata, chunk_size=16, method=method)
    assert _no_bar(capsys.readouterr().err)


def test_aging_atlas_bar(monkeypatch, capsys):
    kwargs = dict(n_donors=4, n_cells_per_donor=10, n_genes=200, n_cell_types=3, seed=0)
    reference = mt.datasets.aging_atlas(**kwargs)  # 40 cells × 200 genes: one chunk, no bar
    assert _no_bar(capsys.readouterr().err)
    monkeypatch.setattr(_atlas_counts, "_CHUNK_ELEMENTS", 200 * 16)  # 16 cells per chunk
    chunked = mt.datasets.aging_atlas(**kwargs)
    lines = _bar_lines(capsys.readouterr().err, "aging_atlas")
    assert lines and "/40" in lines[0]
    with mt.settings.override(progress=False):
        mt.datasets.aging_atlas(**kwargs)
    assert _no_bar(capsys.readouterr().err)
    assert chunked.X.shape == reference.X.shape


def test_log_lines_written_during_a_bar_stay_whole(atlas_and_vocab, capsys):
    """A warning inside the chunk loop is written above the bar, on a line of its own."""
    adata, vocab = atlas_and_vocab
    a = adata.copy()
    X = a.X.toarray().astype(np.float32)
    X[20, 0] = 200.5  # a non-integer count in the second chunk: tokenize warns mid-loop
    a.X = sp.csr_matrix(X)
    mt.pp.tokenize(a, vocab=vocab, chunk_size=16)
    err = capsys.readouterr().err
    assert _bar_lines(err, "tokenize")
    warnings = [line.split("\r")[-1] for line in err.split("\n") if "non-integer" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING: X has non-integer values (e.g. 200.5)")
    assert warnings[0].endswith("normalised data is not)")
