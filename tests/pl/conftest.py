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
