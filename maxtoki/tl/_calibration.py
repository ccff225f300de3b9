"""Calibration of the model's timelapse read-out on reference cells of known age (private).

A small model reads timelapses compressed (predicted ≈ a + b × true with b < 1: regression
towards the mean), so ages read from a random anchor shrink towards the anchors' mean age. The
reference cells already have known ages: aged as queries against contexts of other donors they
give pairs (true timelapse, predicted timelapse), a line per group is fitted to them and each
query's timelapse is mapped back through it, ``(predicted − a) / b``. The line of a query leaves
out every pair with a cell of the query's donor (as calibration query or in its context), so no
age of that donor enters its prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import logging as logg
from ._contexts import Reference, draw_contexts, predict_ages
from ._views import query_views

#: Lines fitted on fewer points, or with a slope below this, leave the timelapses unchanged: the
#: model does not read timelapses in that group well enough to invert its read-out.
MIN_POINTS = 16
MIN_SLOPE = 0.2
#: Reference cells aged per group, and contexts each (the line's points: cells × contexts).
CALIBRATION_CELLS = 64
CALIBRATION_CONTEXTS = 4


@dataclass
class Calibration:
    """Sufficient statistics of the (true, predicted) timelapse pairs, per group and donor.

    ``sums[g]`` holds ``[n, Σx, Σy, Σx², Σxy]`` (x true, y predicted) over the group's pairs,
    ``donor_sums[(g, d)]`` the same over the pairs with a cell of donor ``d``.
    """

    sums: dict[str, np.ndarray]
    donor_sums: dict[tuple[str, str], np.ndarray]

    def line(self, group: str, donor: str | None = None) -> tuple[float, float, int] | None:
        """``(intercept, slope, n)`` of ``group`` without ``donor``'s cells; ``None``: unusable."""
        s = self.sums.get(str(group))
        if s is None:
            return None
        if donor is not None:
            s = s - self.donor_sums.get((str(group), str(donor)), 0.0)
        n, sx, sy, sxx, sxy = s
        var = sxx - sx * sx / n if n else 0.0
        if n < MIN_POINTS or var <= 0:
            return None
        slope = (sxy - sx * sy / n) / var
        if slope < MIN_SLOPE:
            return None
        return (sy - slope * sx) / n, slope, int(n)

    def apply(
        self,
        timelapses: np.ndarray,
        groups: np.ndarray,
        donors: np.ndarray | None,
        *,
        warn: bool = True,
    ) -> np.ndarray:
        """``(predicted − a) / b`` row by row (rows: queries); unusable lines leave a row as is.

        ``warn=False`` keeps quiet about those rows (a second read of the same queries).
        """
        out = np.array(timelapses, dtype=np.float64, copy=True)
        skipped: set[str] = set()
        for i, g in enumerate(np.asarray(groups).astype(str)):
            line = self.line(g, None if donors is None else donors[i])
            if line is None:
                skipped.add(g)
                continue
            a, b, _ = line
            out[i] = (out[i] - a) / b
        if skipped and warn:
            shown = ", ".join(sorted(skipped)[:5]) + (" …" if len(skipped) > 5 else "")
            logg.warning(
                f"timelapses of group(s) {shown} left uncalibrated: fewer than {MIN_POINTS} "
                f"reference pairs or a slope below {MIN_SLOPE} (the model barely reads "
                "timelapses there)"
            )
        return out

    def table(self) -> dict[str, list]:
        """The fitted lines (all cells), one entry per group: for ``uns``."""
        rows = {g: self.line(g) for g in sorted(self.sums)}
        return {
            "group": list(rows),
            "intercept_months": [float("nan") if r is None else float(r[0]) for r in rows.values()],
            "slope": [float("nan") if r is None else float(r[1]) for r in rows.values()],
            "n_pairs": [int(self.sums[g][0]) for g in rows],
        }


def fit_calibration(
    runner,
    encoder,
    ref: Reference,
    groups: np.ndarray,
    *,
    n_context_cells: int,
    gen: np.random.Generator,
    desc: str,
    n_cells: int = CALIBRATION_CELLS,
    n_contexts: int = CALIBRATION_CONTEXTS,
    n_views: int = 1,
) -> Calibration:
    """Age up to ``n_cells`` reference cells of each of ``groups`` and collect the pairs.

    Each calibration cell is a query against ``n_contexts`` contexts of its group (never itself,
    never its donor when donors are known), exactly as real queries are, through ``n_views``
    views (:func:`~maxtoki.tl._views.query_views`). Groups with a single donor (or cell) get no
    line.
    """
    picked = []
    ref_groups = ref.groups.astype(str)
    for g in sorted({str(g) for g in np.asarray(groups)}):
        rows = np.flatnonzero(ref_groups == g)
        owners = rows if ref.donors is None else ref.donors[rows]
        if len(np.unique(owners)) < 2:
            continue
        if len(rows) > n_cells:
            rows = np.sort(gen.choice(rows, n_cells, replace=False))
        picked.append(rows)
    rows = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    sums: dict[str, np.ndarray] = {}
    donor_sums: dict[tuple[str, str], np.ndarray] = {}
    if len(rows) == 0:
        return Calibration(sums, donor_sums)
    donors = None if ref.donors is None else ref.donors[rows]
    contexts = draw_contexts(
        ref, ref.groups[rows], donors, rows, n_contexts=n_contexts, n_cells=n_context_cells,
        gen=gen, groupby="calibration group",
    )  # fmt: skip
    queries = query_views([ref.cells[r] for r in rows], n_views, gen)
    _, predicted = predict_ages(runner, encoder, ref.cells, ref.times, queries, contexts, desc=desc)
    true = ref.times[rows][:, None] - ref.times[contexts[:, :, -1]]
    for i, r in enumerate(rows):
        g = str(ref.groups[r])
        for c in range(contexts.shape[1]):
            x, y = float(true[i, c]), float(predicted[i, c])
            stats = np.array([1.0, x, y, x * x, x * y])
            sums[g] = sums.get(g, 0.0) + stats
            if ref.donors is None:
                continue
            for donor in {str(ref.donors[r]), *ref.donors[contexts[i, c]].astype(str)}:
                donor_sums[(g, donor)] = donor_sums.get((g, donor), 0.0) + stats
    return Calibration(sums, donor_sums)
