"""Set-up of the mt.tl tests: the small model trained once per session (see ``tl_setup``)."""

import pytest
import tl_setup


@pytest.fixture(scope="session")
def trained():
    """``(adata, vocab, model)``: the tokenized atlas and the model trained on it."""
    return tl_setup.trained()
