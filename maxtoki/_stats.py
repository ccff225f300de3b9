"""One statistic shared by the layers: the Pearson r used in evaluation, training and plots."""

from __future__ import annotations

import numpy as np


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of ``x`` and ``y``; NaN below 3 pairs or where either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
