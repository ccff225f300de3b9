"""Bad input to mt.datasets: clear errors that name the fix, and the input left unchanged."""

from __future__ import annotations

import pytest
from bad_input import *  # noqa: F403 (the shared fixtures, builders and case table)

# datasets -----------------------------------------------------------------------------------
T = "datasets.aging_atlas"
for name, bad, msg in (
    ("n_donors", -1, r"`n_donors` must be at least 4"),
    ("n_donors", "40", r"`n_donors` must be an integer"),
    ("n_donors", 4.5, r"`n_donors` must be an integer"),
    ("n_cells_per_donor", 0, r"`n_cells_per_donor` must be at least 1"),
    ("n_genes", 10, r"`n_genes` must be at least 200"),
    ("n_cell_types", 0, r"`n_cell_types` must be at least 3"),
    ("n_heldout_cell_types", 6, r"`n_heldout_cell_types` must be at least 0 and at most"),
    ("disease_fraction", 2.0, r"`disease_fraction` must lie in \[0, 0\.5\)"),
    ("max_age_years", -1.0, r"`max_age_years` must lie in"),
    ("library_size", 0.0, r"`library_size` must lie in"),
    ("dropout", 1.5, r"`dropout` must lie in"),
    ("age_effect", np.nan, r"`age_effect` must be a finite number"),
    ("seed", "a", r"`seed` must be an integer"),
):
    case(
        T,
        f"{name}={bad!r}",
        lambda: None,
        lambda _, n=name, b=bad: mt.datasets.aging_atlas(**{n: b}),
        match=msg,
    )


@pytest.mark.parametrize("c", cases_of("datasets"), ids=lambda c: c.id)
def test_bad_input(c):
    run_case(c)


def test_every_public_function_is_covered():
    check_coverage("datasets")
