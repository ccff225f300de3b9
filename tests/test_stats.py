"""The shared Pearson r against SciPy's, and its NaN cases."""

import numpy as np
import pytest
from scipy.stats import pearsonr

from maxtoki._stats import pearson_r


def test_pearson_r_matches_scipy():
    gen = np.random.default_rng(0)
    x = gen.normal(size=50)
    y = 0.6 * x + gen.normal(size=50)
    assert pearson_r(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [([1.0, 2.0], [2.0, 1.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [4.0] * 3)],
    ids=["two pairs", "x constant", "y constant"],
)
def test_pearson_r_is_nan_where_undefined(x, y):
    assert np.isnan(pearson_r(np.array(x), np.array(y)))
