"""Views of a query cell: the cell, then copies with a share of its genes dropped (private).

A small model's age read-out depends on exactly which genes make a cell's top ``max_genes``.
Reading a cell through several views, each dropping a random share of its ranked genes (so genes
ranked just below the cut move in), and aggregating over them averages that dependence out:
``predict_time(n_views=…)`` and ``evaluate(n_views=…)`` give each of a cell's contexts one view
in turn, so the number of model calls does not change (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

#: Share of a view's genes dropped (each gene independently; ``<bos>``/``<eos>`` always kept).
VIEW_DROPOUT = 0.2


def query_views(
    cells: list[np.ndarray], n_views: int, gen: np.random.Generator
) -> list[list[np.ndarray]]:
    """``n_views`` views of each ``<bos> genes… <eos>`` cell: the cell, then dropout copies.

    Each copy drops every gene with probability :data:`VIEW_DROPOUT` and keeps at least one.
    ``n_views=1`` draws nothing and returns each cell as its only view.
    """
    if n_views == 1:
        return [[cell] for cell in cells]
    views = []
    for cell in cells:
        genes = cell[1:-1]
        own = [cell]
        for _ in range(n_views - 1):
            keep = gen.random(len(genes)) >= VIEW_DROPOUT
            if not keep.any():
                keep[:1] = True  # a view that lost every gene keeps the top one
            own.append(np.concatenate([cell[:1], genes[keep], cell[-1:]]))
        views.append(own)
    return views
