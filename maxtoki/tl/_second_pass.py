"""A second read of each cell's age, from contexts drawn around a first estimate (private).

A small model reads timelapses compressed (see :mod:`._calibration`), so a read is the less
accurate the farther the query lies from the last context cell. The second pass draws
``OVERSAMPLE × n_contexts`` contexts per query exactly as the first pass does (the query's group,
never the query itself nor its donor), keeps the ``n_contexts`` whose last cell's age is nearest
the query's first estimate (never its true age) and reads them again, through the first pass's
calibration lines when there are any; ``predict_time`` and ``evaluate`` then aggregate both passes'
reads together. Measured on the demo in docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np

from ._calibration import Calibration
from ._contexts import Reference, draw_contexts, predict_ages

#: Contexts drawn per kept context: the candidates among which the nearest are kept.
OVERSAMPLE = 4


def refine_ages(
    runner,
    encoder,
    ref: Reference,
    queries: list[np.ndarray] | list[list[np.ndarray]],
    query_groups: np.ndarray,
    query_donors: np.ndarray | None,
    query_self: np.ndarray,
    first_ages: np.ndarray,
    *,
    n_contexts: int,
    n_context_cells: int,
    gen: np.random.Generator,
    groupby,
    desc: str,
    calibration: Calibration | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ages and timelapses read from contexts that end near each query's first estimate.

    Parameters
    ----------
    runner, encoder
        The batch runner of the model and the prompt encoder, as for the first pass.
    ref
        The reference cells (ages known) the contexts are drawn from.
    queries, query_groups, query_donors, query_self
        The query cells (or each cell's views, as the first pass read them), their groups,
        donors (or ``None``) and positions in ``ref`` (-1: none).
    first_ages
        Each query's first estimate of its age (months), e.g. the calibrated median.
    n_contexts, n_context_cells
        Contexts kept per query and cells per context.
    gen
        Random generator of the draws.
    groupby, desc
        The grouping (for error messages) and the progress bar's label.
    calibration
        The first pass's lines; the second pass's timelapses are read through them.

    Returns
    -------
    ``(ages, timelapses, contexts)``: ages and timelapses of shape ``(n_queries, n_contexts)``
    and the kept contexts, ``(n_queries, n_contexts, n_context_cells)`` positions in ``ref``.
    """
    first = np.asarray(first_ages, dtype=np.float64)
    if first.shape != (len(queries),) or not np.isfinite(first).all():
        raise ValueError(
            f"first_ages must hold one finite age per query ({len(queries)}), got shape "
            f"{first.shape}"
        )
    candidates = draw_contexts(
        ref, query_groups, query_donors, query_self, n_contexts=OVERSAMPLE * n_contexts,
        n_cells=n_context_cells, gen=gen, groupby=groupby,
    )  # fmt: skip
    distance = np.abs(ref.times[candidates[:, :, -1]] - first[:, None])
    keep = np.argsort(distance, axis=1, kind="stable")[:, :n_contexts]
    contexts = np.take_along_axis(candidates, keep[:, :, None], axis=1)
    ages, dts = predict_ages(runner, encoder, ref.cells, ref.times, queries, contexts, desc=desc)
    if calibration is not None:
        dts = calibration.apply(dts, query_groups, query_donors, warn=False)  # warned once
        ages = ref.times[contexts[:, :, -1]] + dts
    return ages, dts, contexts
