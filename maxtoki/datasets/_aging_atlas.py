r"""The simulated human aging atlas with known ground truth: :func:`maxtoki.datasets.aging_atlas`.

The generator runs in stages, one function each: argument validation (:func:`_check_arguments`),
cell types and aging programs (:func:`_cell_type_programs`), genes (``_simulate_genes`` in
:mod:`._atlas_genes`: the gene plan, each kind of gene, loadings, random order), donors
(:func:`_simulate_donors`), cells (:func:`_sample_cells`), counts generated chunk by chunk into
CSR buffers (``_simulate_counts`` in :mod:`._atlas_counts`) and the annotations
(:func:`_var_table`, :func:`_obs_table`, :func:`_ground_truth`). Three independent random streams
are spawned from ``seed``: one for the programs and genes, one for the donors and one for the
cells; each stage draws from its stream in a fixed order, so the same arguments give the same
atlas bit for bit. ``docs/atlas.md`` explains the model for users; the details, with every
constant, follow.

**Generative model.** For cell :math:`c` of donor :math:`d` and cell type :math:`k`, the
log-mean of gene :math:`g` is

.. math::

    \eta_{cg} = \beta_g + o_{kg} + s_{g,\mathrm{sex}(d)} + u_{dg} + m_{cg}
                + \sum_f L_{gf} z_{cf}

- :math:`\beta_g` (``var['baseline_log_expression']``): gene baseline, drawn per kind of
  gene; housekeeping genes are high, and most program genes are expressed at every age so
  that aging moves their *level and rank*, not only their presence.
- :math:`o_{kg}` (``varm['aging_atlas_cell_type_offset']``): cell-type identity. Each type
  has marker genes (+2.5 to +4) and two identity TFs (+3), and small offsets
  (:math:`N(0, 0.4^2)`) on every other gene; program genes get another
  :math:`N(0, 0.3^2)` plus :math:`\sum_p L_{gp} b_{kp}`, a shift of the type along each
  program's aging direction (``uns['aging_atlas']['cell_type_program_shift']``). The
  training types' shifts average zero; held-out types sit 0.12 activity units *younger* on
  every monotonic program. So absolute expression maps to age differently per type while
  *changes* with age are shared: a global model trained on other types is biased on a
  held-out type, a comparison with context cells of the same type is not.
- :math:`s`: sex genes, 3 female- and 5 male-specific (+3 in their sex, -4 in the other).
- :math:`u_{dg} \sim N(0, \mathrm{donor\_noise}^2)`: donor effect on every gene (a tenth
  of it on housekeeping genes).
- :math:`m_{cg}`: disease markers, +2.5 in the marker cell type of diseased donors.
- :math:`z_{cf}`: latent activity of regulator :math:`f`. Seven shared programs
  (development, maturation, midlife, inflammaging, senescence, proteostasis, sex_hormone)
  are each driven by two TFs. A TF's own expression (loading 1.4–2.0) and its targets
  (loadings ±0.6–1.6, three quarters positive; a target follows one or both TFs) load on
  the same latent
  ``z = shift_kp + gain_kp * (a_p(biological age, sex) + donor deviation + cell noise +
  TF noise)``, so the TFs change with age and their targets follow them. ``a_p`` is the
  program's curve, between about 0 and 1 over life (monotonic or not; tabulated in
  ``uns``); ``gain_kp`` in [0.6, 1.4] makes aging only partly shared across types. Each
  cell type also has one private monotonic program (a sigmoid in age, no TF) acting only
  in that type. The donor deviation (:math:`N(0, (0.1\,\mathrm{donor\_noise})^2)`) and the
  cell noise (:math:`N(0, \mathrm{cell\_noise}^2)`) are shared by all genes of a program,
  the TF noise (half the cell noise) by one TF and its targets: a single cell can look
  older or younger than its donor, and context cells of the same type average that out.
  All loadings are multiplied by ``age_effect``.

Counts. Housekeeping genes take a fixed share of each cell's library (their share at the
cell type's baseline), so they stay flat after normalisation; the rest of the library is
spread over the other genes by a softmax of :math:`\eta`. The library size :math:`\ell_c`
is log-normal around ``library_size`` (log-sd 0.35 per cell and 0.15 per donor, clipped to
[library_size/4, 4 library_size]). Counts are negative binomial (gamma-Poisson) with mean
:math:`\mu_{cg}` and gene-specific size :math:`r_g` (``var['nb_dispersion']``, 1–20; 30
for housekeeping genes), then set to zero with probability
``dropout * sigmoid(-1.5 log(mu))`` (extra dropout of lowly expressed genes). Cells are
generated in chunks straight into the CSR buffers, so memory grows with the number of
non-zeros, never with cells × genes.

Donors. Controls are the majority; for each sex their ages are spread evenly from birth
(youngest within a year of 0) to ``max_age_years`` (oldest 90 years or more), so a healthy
reference exists for every age, sex and cell type. Diseased and resilient donors are adults
(55–95 % of ``max_age_years``). Sexes alternate and are balanced to within one donor.
Cell-type proportions vary by donor (Dirichlet around equal proportions). ``fibrosis``
donors' fibroblasts are ``fibrosis_acceleration_months`` older biologically (their
programs run at the biological age) and ``alzheimer`` donors' microglia
``alzheimer_acceleration_months`` older; ``resilient`` donors' microglia carry the
alzheimer markers with no acceleration. Every other cell of a diseased donor is
unaffected.

Signal strength (checked in the tests at the defaults). Within each cell type, among
control cells, the monotonic genes of the shared programs and of the type's own program
have log-normalised expression whose absolute Spearman correlation with age averages above
0.2 in every type and above 0.25 over types; housekeeping genes average below 0.1.
Realised ``n_counts`` lie between ``library_size / 10`` and ``10 * library_size``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import logging as logg
from ._atlas_counts import _private_activity, _shared_activity, _simulate_counts
from ._atlas_genes import _N_TF_PER_PROGRAM, _SHARED_PROGRAMS, _Genes, _min_genes, _simulate_genes

__all__ = ["aging_atlas"]

#: Cell types in the order they are used; the first two are the disease-affected ones and the
#: last ``n_heldout_cell_types`` of the first ``n_cell_types`` are held out.
_CELL_TYPES = (
    "fibroblast",
    "microglia",
    "CD4 T cell",
    "B cell",
    "classical monocyte",
    "endothelial cell",
    "NK cell",
    "hepatocyte",
    "keratinocyte",
    "alveolar type 2 cell",
    "cardiomyocyte",
    "oligodendrocyte",
)
_CELL_TYPE_TAGS = (
    "FIB", "MG", "TCD4", "BC", "MONO", "ENDO", "NK", "HEP", "KRT", "AT2", "CM", "OLIG",
)  # fmt: skip

_CONDITIONS = ("control", "fibrosis", "alzheimer", "resilient")
#: condition -> (cell type whose aging is accelerated, cell type that carries the markers,
#: marker set)
_AFFECTED = {
    "fibrosis": ("fibroblast", "fibroblast", "fibrosis"),
    "alzheimer": ("microglia", "microglia", "alzheimer"),
    "resilient": ("", "microglia", "alzheimer"),
}

_HELDOUT_SHIFT = 0.12  # how much younger held-out types look on monotonic programs (activity)
_AGE_GRID_MONTHS = np.arange(0, 1441, 12)  # 0-120 years, yearly, for the recorded curves


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ValueError(f"`{name}` must be at least {minimum}{upper}, got {value}")
    return value


def _check_real(
    name: str, value, minimum: float, maximum: float, *, open_max: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    value = float(value)
    too_big = value >= maximum if open_max else value > maximum
    if value < minimum or too_big:
        bracket = ")" if open_max else "]"
        raise ValueError(f"`{name}` must lie in [{minimum:g}, {maximum:g}{bracket}, got {value:g}")
    return value


def _stratified_ages(
    n: int, low: float, high: float, rng: np.random.Generator, *, top_floor: float | None = None
) -> np.ndarray:
    """``n`` ages spread evenly over ``[low, high]`` months with jitter.

    The youngest lies within a year of ``low``, the oldest within a year of ``high`` and not
    below ``top_floor``.
    """
    if n == 1:
        return np.array([rng.uniform(low, high)])
    base = np.linspace(low, high, n)
    spacing = (high - low) / (n - 1)
    jitter = rng.uniform(-0.4, 0.4, n) * spacing
    end = min(0.4 * spacing, 12.0)
    jitter[0] = rng.uniform(0.0, end)
    floor = high - end if top_floor is None else max(high - end, top_floor)
    jitter[-1] = -rng.uniform(0.0, high - floor)
    return np.clip(base + jitter, low, high)


# ------------------------------------------------------------------------------------ arguments
@dataclass(frozen=True)
class _Params:
    """The validated arguments of :func:`aging_atlas`, in the order of its signature."""

    n_donors: int
    n_cells_per_donor: int
    n_genes: int
    n_cell_types: int
    n_heldout_cell_types: int
    disease_fraction: float
    fibrosis_acceleration_months: int
    alzheimer_acceleration_months: int
    max_age_years: float
    library_size: float
    age_effect: float
    donor_noise: float
    cell_noise: float
    dropout: float
    seed: int

    @property
    def n_cells(self) -> int:
        """Number of cells of the atlas."""
        return self.n_donors * self.n_cells_per_donor


def _check_arguments(args: dict) -> _Params:
    """Validate the arguments of :func:`aging_atlas`.

    Parameters
    ----------
    args
        The arguments by name, as passed.

    Returns
    -------
    The validated arguments (Python ``int`` and ``float``). They are checked in a fixed order,
    so the first invalid one is the one reported.
    """
    n_donors = _check_int("n_donors", args["n_donors"], 4)
    n_cells_per_donor = _check_int("n_cells_per_donor", args["n_cells_per_donor"], 1)
    n_cell_types = _check_int("n_cell_types", args["n_cell_types"], 3, len(_CELL_TYPES))
    n_heldout = _check_int(
        "n_heldout_cell_types", args["n_heldout_cell_types"], 0, n_cell_types - 2
    )
    min_genes = max(200, _min_genes(n_cell_types))
    # keyword arguments are evaluated in order: the checks below run top to bottom
    return _Params(
        n_donors=n_donors,
        n_cells_per_donor=n_cells_per_donor,
        n_genes=_check_int("n_genes", args["n_genes"], min_genes),
        n_cell_types=n_cell_types,
        n_heldout_cell_types=n_heldout,
        disease_fraction=_check_real(
            "disease_fraction", args["disease_fraction"], 0.0, 0.5, open_max=True
        ),
        fibrosis_acceleration_months=_check_int(
            "fibrosis_acceleration_months", args["fibrosis_acceleration_months"], 0, 600
        ),
        alzheimer_acceleration_months=_check_int(
            "alzheimer_acceleration_months", args["alzheimer_acceleration_months"], 0, 600
        ),
        max_age_years=_check_real("max_age_years", args["max_age_years"], 90.0, 120.0),
        library_size=_check_real("library_size", args["library_size"], 100.0, 1e6),
        age_effect=_check_real("age_effect", args["age_effect"], 0.0, 5.0),
        donor_noise=_check_real("donor_noise", args["donor_noise"], 0.0, 2.0),
        cell_noise=_check_real("cell_noise", args["cell_noise"], 0.0, 2.0),
        dropout=_check_real("dropout", args["dropout"], 0.0, 1.0, open_max=True),
        seed=_check_int("seed", args["seed"], 0),
    )


# ------------------------------------------------------------------------- programs (per type)
@dataclass
class _Programs:
    """Cell types and aging programs: the shared ones first, then one private one per type."""

    cell_types: list[str]
    tags: tuple[str, ...]  # symbol tag of each cell type
    heldout: list[str]
    is_heldout_type: np.ndarray
    names: list[str]
    shapes: list[str]  # 'increasing', 'decreasing' or 'non-monotonic'
    private_midpoint: np.ndarray  # age (years) at the middle of each private sigmoid
    private_direction: np.ndarray  # +1 increasing, -1 decreasing
    gain: np.ndarray  # cell types x programs
    shift: np.ndarray  # cell types x programs
    factor_program: np.ndarray  # program of each latent factor (TF latents, private programs)

    @property
    def n_shared(self) -> int:
        """Number of shared (TF-driven) programs."""
        return len(_SHARED_PROGRAMS)

    @property
    def n_programs(self) -> int:
        """Number of programs, shared and private."""
        return len(self.names)

    @property
    def n_factors(self) -> int:
        """Number of latent factors: one per driver TF, one per private program."""
        return self.factor_program.size


def _cell_type_programs(p: _Params, rng: np.random.Generator) -> _Programs:
    """Draw the private programs and each cell type's gain and shift along every program.

    Parameters
    ----------
    p
        The validated arguments.
    rng
        The genes' random stream (drawn from first).

    Returns
    -------
    The cell types and programs.
    """
    n_cell_types, n_heldout = p.n_cell_types, p.n_heldout_cell_types
    cell_types = list(_CELL_TYPES[:n_cell_types])
    heldout = cell_types[n_cell_types - n_heldout :] if n_heldout else []
    is_heldout_type = np.array([t in heldout for t in cell_types])
    n_shared = len(_SHARED_PROGRAMS)
    n_programs = n_shared + n_cell_types
    names = [q[0] for q in _SHARED_PROGRAMS] + [f"{t.replace(' ', '_')}_aging" for t in cell_types]

    priv_mid = rng.uniform(25.0, 65.0, n_cell_types)
    priv_dir = np.where(np.arange(n_cell_types) % 2 == 0, 1.0, -1.0)
    rng.shuffle(priv_dir)
    shapes = [q[1] for q in _SHARED_PROGRAMS] + [
        "increasing" if d > 0 else "decreasing" for d in priv_dir
    ]
    gain = np.zeros((n_cell_types, n_programs))
    gain[:, :n_shared] = rng.uniform(0.6, 1.4, (n_cell_types, n_shared))
    gain[:, n_shared:] = np.eye(n_cell_types)
    shift = np.zeros((n_cell_types, n_programs))
    shift[:, :n_shared] = rng.normal(0.0, 0.25, (n_cell_types, n_shared))
    shift[~is_heldout_type, :n_shared] -= shift[~is_heldout_type, :n_shared].mean(axis=0)
    # held-out types look younger than they are on the monotonic programs (relative to the
    # training types, whose shifts average 0): a global model trained on the other types is
    # biased there, comparing with same-type context is not
    direction = np.array([{"increasing": 1.0, "decreasing": -1.0}.get(s, 0.0) for s in shapes])
    mono_shared = direction[:n_shared] != 0
    shift[np.ix_(is_heldout_type, mono_shared)] = -_HELDOUT_SHIFT * direction[:n_shared][
        mono_shared
    ] + rng.normal(0.0, 0.03, (n_heldout, mono_shared.sum()))
    factor_program = np.concatenate(
        [np.repeat(np.arange(n_shared), _N_TF_PER_PROGRAM), n_shared + np.arange(n_cell_types)]
    )
    return _Programs(
        cell_types=cell_types,
        tags=_CELL_TYPE_TAGS[:n_cell_types],
        heldout=heldout,
        is_heldout_type=is_heldout_type,
        names=names,
        shapes=shapes,
        private_midpoint=priv_mid,
        private_direction=priv_dir,
        gain=gain,
        shift=shift,
        factor_program=factor_program,
    )


# --------------------------------------------------------------------------------------- donors
@dataclass
class _Donors:
    """Donors in their final order (controls first, then fibrosis, alzheimer, resilient)."""

    names: list[str]
    female: np.ndarray
    age: np.ndarray  # chronological age in months (int32)
    condition: np.ndarray  # index into _CONDITIONS
    effect: np.ndarray  # donors x genes, on log expression (float32)
    program_deviation: np.ndarray  # donors x programs
    log_library: np.ndarray  # per-donor shift of the log library size
    composition: np.ndarray  # donors x cell types: expected proportions


def _donor_sexes_ages_conditions(
    p: _Params, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sex, age (months) and condition of every donor.

    Controls alternate sexes, their ages spread over the whole life span for each sex; diseased
    and resilient donors are adults. Donors are numbered controls first (by age, sexes
    interleaved), then the conditions in order.

    Parameters
    ----------
    p
        The validated arguments.
    rng
        The donors' random stream (drawn from first).

    Returns
    -------
    Whether each donor is female, the donors' ages in months (int32) and their conditions
    (indices into ``_CONDITIONS``).
    """
    n_donors = p.n_donors
    n_noncontrol = round(p.disease_fraction * n_donors)
    n_per_condition = [n_noncontrol // 3 + (i < n_noncontrol % 3) for i in range(3)]
    n_control = n_donors - n_noncontrol
    max_age_months = p.max_age_years * 12.0
    donor_female = np.zeros(n_donors, dtype=bool)
    donor_age = np.zeros(n_donors)
    donor_condition = np.zeros(n_donors, dtype=np.int64)
    n_f = (n_control + 1) // 2
    donor_female[:n_control] = np.arange(n_control) < n_f
    floor = 90.0 * 12.0  # the oldest control of each sex (when there are 2+) is 90 or older
    donor_age[:n_f] = _stratified_ages(n_f, 0.0, max_age_months, rng, top_floor=floor)
    donor_age[n_f:n_control] = _stratified_ages(
        n_control - n_f, 0.0, max_age_months, rng, top_floor=floor
    )
    i = n_control
    female_next = n_f <= n_control - n_f  # give the next donor to the smaller sex
    for c, n in enumerate(n_per_condition, start=1):
        if n == 0:
            continue
        sl = slice(i, i + n)
        sexes = (np.arange(n) % 2 == 0) == female_next
        donor_female[sl] = sexes
        female_next = female_next ^ (n % 2 == 1)
        donor_age[sl] = rng.permutation(
            _stratified_ages(n, 0.55 * max_age_months, 0.95 * max_age_months, rng)
        )
        donor_condition[sl] = c
        i += n
    donor_age = np.rint(donor_age).astype(np.int32)
    # interleave control sexes in the donor order (D00 female, D01 male, ...)
    order = np.concatenate(
        [np.ravel(np.column_stack([np.arange(n_f)[: n_control - n_f], np.arange(n_f, n_control)])),
         np.arange(n_control - n_f, n_f),
         np.arange(n_control, n_donors)]
    )  # fmt: skip
    return donor_female[order], donor_age[order], donor_condition[order]


def _simulate_donors(
    p: _Params, programs: _Programs, genes: _Genes, rng: np.random.Generator
) -> _Donors:
    """Draw the donors: sex, age, condition, donor effects, library size and composition.

    Parameters
    ----------
    p
        The validated arguments.
    programs
        Cell types and programs.
    genes
        The genes, in their final order (housekeeping genes get a tenth of the donor effect).
    rng
        The donors' random stream.

    Returns
    -------
    The donors.
    """
    n_donors = p.n_donors
    female, age, condition = _donor_sexes_ages_conditions(p, rng)
    width = max(2, len(str(n_donors - 1)))
    donor_effect = rng.standard_normal((n_donors, p.n_genes), dtype=np.float32)
    donor_effect *= np.float32(p.donor_noise)
    donor_effect[:, genes.kind == "housekeeping"] *= np.float32(0.1)
    donor_dev = rng.normal(0.0, 0.1 * p.donor_noise, (n_donors, programs.n_programs))
    donor_lib = rng.normal(0.0, 0.15, n_donors)
    composition = rng.dirichlet(np.full(p.n_cell_types, 10.0), n_donors)
    return _Donors(
        names=[f"D{i:0{width}d}" for i in range(n_donors)],
        female=female,
        age=age,
        condition=condition,
        effect=donor_effect,
        program_deviation=donor_dev,
        log_library=donor_lib,
        composition=composition,
    )


@dataclass
class _Conditions:
    """Per condition (in ``_CONDITIONS`` order): planted acceleration and affected cell types."""

    acceleration: dict[str, int]  # months, by condition name
    accelerated_type: np.ndarray  # index of the accelerated cell type, -1 for none
    marker_type: np.ndarray  # index of the cell type carrying disease markers, -1 for none
    marker_row: np.ndarray  # row of the marker set in ``_Genes.disease_eff``, -1 for none
    acceleration_by_condition: np.ndarray  # months


def _condition_effects(p: _Params, cell_types: list[str]) -> _Conditions:
    """Which cell type each condition accelerates and marks, and by how many months."""
    acceleration = {
        "control": 0,
        "fibrosis": p.fibrosis_acceleration_months,
        "alzheimer": p.alzheimer_acceleration_months,
        "resilient": 0,
    }
    accel_type = np.full(len(_CONDITIONS), -1)
    marker_type = np.full(len(_CONDITIONS), -1)
    marker_row = np.full(len(_CONDITIONS), -1)
    for c, cond in enumerate(_CONDITIONS):
        if cond in _AFFECTED:
            acc_t, mark_t, mark_set = _AFFECTED[cond]
            accel_type[c] = cell_types.index(acc_t) if acc_t and acceleration[cond] else -1
            marker_type[c] = cell_types.index(mark_t)
            marker_row[c] = ("fibrosis", "alzheimer").index(mark_set)
    return _Conditions(
        acceleration=acceleration,
        accelerated_type=accel_type,
        marker_type=marker_type,
        marker_row=marker_row,
        acceleration_by_condition=np.array([acceleration[c] for c in _CONDITIONS]),
    )


# ---------------------------------------------------------------------------------------- cells
@dataclass
class _Cells:
    """Every cell's donor, type, condition, ages and target library size (ordered by donor)."""

    donor: np.ndarray
    cell_type: np.ndarray
    condition: np.ndarray
    planted: np.ndarray  # planted acceleration in months (int32)
    marker_cell: np.ndarray  # expresses disease markers
    age_months: np.ndarray  # chronological (int32)
    bio_age: np.ndarray  # biological: age_months + planted
    log_lib: np.ndarray  # log target library size


def _sample_cells(
    p: _Params, donors: _Donors, conditions: _Conditions, rng: np.random.Generator
) -> _Cells:
    """Sample each donor's cells (types from the donor's composition) and library sizes.

    Parameters
    ----------
    p
        The validated arguments.
    donors
        The donors.
    conditions
        What each condition does to which cell type.
    rng
        The cells' random stream (drawn from first).

    Returns
    -------
    The cells.
    """
    n_donors, n_per_donor, library_size = p.n_donors, p.n_cells_per_donor, p.library_size
    cell_donor = np.repeat(np.arange(n_donors), n_per_donor)
    cell_type = np.empty(p.n_cells, dtype=np.int64)
    for d in range(n_donors):
        cell_type[d * n_per_donor : (d + 1) * n_per_donor] = rng.choice(
            p.n_cell_types, n_per_donor, p=donors.composition[d]
        )
    cell_cond = donors.condition[cell_donor]
    affected = conditions.accelerated_type[cell_cond] == cell_type
    planted = np.where(affected, conditions.acceleration_by_condition[cell_cond], 0)
    planted = planted.astype(np.int32)
    age_months = donors.age[cell_donor]
    log_lib = (
        np.log(library_size) + donors.log_library[cell_donor] + rng.normal(0.0, 0.35, p.n_cells)
    ).clip(np.log(library_size / 4), np.log(library_size * 4))
    return _Cells(
        donor=cell_donor,
        cell_type=cell_type,
        condition=cell_cond,
        planted=planted,
        marker_cell=conditions.marker_type[cell_cond] == cell_type,
        age_months=age_months,
        bio_age=age_months + planted,
        log_lib=log_lib,
    )


@dataclass
class _Atlas:
    """Everything drawn before the counts, shared by the later stages."""

    p: _Params
    programs: _Programs
    genes: _Genes
    donors: _Donors
    conditions: _Conditions
    cells: _Cells


# ---------------------------------------------------------------------------------- annotations
def _object_strings(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns and index as ``object``, which anndata writes to ``.h5ad`` as is.

    pandas 3 infers its ``str`` dtype, which anndata refuses to write unless asked
    (``anndata.settings.allow_write_nullable_strings``).
    """
    for col in table.columns:
        dtype = table[col].dtype
        if not isinstance(dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(dtype):
            table[col] = table[col].astype(object)
    table.index = table.index.astype(object)
    return table


def _var_table(genes: _Genes) -> pd.DataFrame:
    """``var``: one row per gene (symbols as index), IDs numbered in the final order."""
    kind = genes.kind
    ensembl = [f"ENSG9{i + 1:010d}" for i in range(kind.size)]
    table = pd.DataFrame(
        {
            "ensembl_id": ensembl,
            "gene_kind": pd.Categorical(kind, categories=[k for k, _ in genes.plan]),
            "is_tf": np.char.endswith(kind.astype(str), "_tf"),
            "is_housekeeping": kind == "housekeeping",
            "age_program": genes.age_program.astype(str),
            "age_trend": genes.trend.astype(str),
            "regulators": genes.regulators.astype(str),
            "program_loading": genes.program_loadings.sum(axis=1),
            "cell_type_marker": genes.marker_of.astype(str),
            "sex_specific": genes.sex_specific.astype(str),
            "disease_marker": genes.disease_marker.astype(str),
            "baseline_log_expression": genes.base,
            "nb_dispersion": genes.r_nb,
        },
        index=pd.Index(genes.symbols.astype(str), name="gene_symbol"),
    )
    return _object_strings(table)


def _obs_table(atlas: _Atlas, n_counts: np.ndarray) -> pd.DataFrame:
    """``obs``: one row per cell, named ``<donor>-<index>``."""
    p, donors, cells = atlas.p, atlas.donors, atlas.cells
    cell_width = len(str(p.n_cells_per_donor - 1))
    obs_names = [
        f"{donors.names[d]}-{j:0{cell_width}d}"
        for d in range(p.n_donors)
        for j in range(p.n_cells_per_donor)
    ]
    cell_type = cells.cell_type
    table = pd.DataFrame(
        {
            "donor": pd.Categorical.from_codes(cells.donor, categories=donors.names),
            "sex": pd.Categorical.from_codes(
                np.where(donors.female[cells.donor], 0, 1), categories=["female", "male"]
            ),
            "age_months": cells.age_months.astype(np.int32),
            "age_years": cells.age_months / 12.0,
            "cell_type": pd.Categorical.from_codes(cell_type, categories=atlas.programs.cell_types),
            "heldout_cell_type": atlas.programs.is_heldout_type[cell_type],
            "condition": pd.Categorical.from_codes(cells.condition, categories=list(_CONDITIONS)),
            "planted_acceleration_months": cells.planted,
            "biological_age_months": cells.bio_age.astype(np.int32),
            "disease_marker_cell": cells.marker_cell,
            "n_counts": n_counts,
        },
        index=pd.Index(obs_names, name="cell"),
    )
    return _object_strings(table)


def _program_curves(programs: _Programs) -> dict[str, np.ndarray]:
    """Activity of every program on the yearly age grid, by sex (programs x grid)."""
    grid_years = _AGE_GRID_MONTHS / 12.0
    curves = {}
    for sex, female in (("female", True), ("male", False)):
        fem = np.full(grid_years.size, female)
        curves[sex] = np.concatenate(
            [
                _shared_activity(grid_years, fem),
                _private_activity(
                    grid_years, programs.private_midpoint, programs.private_direction
                ),
            ],
            axis=1,
        ).T
    return curves


def _ground_truth(atlas: _Atlas) -> dict:
    """``uns['aging_atlas']``: the arguments and everything that was planted."""
    p, programs, conditions = atlas.p, atlas.programs, atlas.conditions
    cell_types, n_shared = programs.cell_types, programs.n_shared
    curves = _program_curves(programs)
    program_tfs = [
        ",".join(atlas.genes.tf_symbol[q * _N_TF_PER_PROGRAM + t] for t in range(_N_TF_PER_PROGRAM))
        for q in range(n_shared)
    ] + [""] * p.n_cell_types
    accel_type, marker_type = conditions.accelerated_type, conditions.marker_type
    return {
        "params": dataclasses.asdict(p),
        "cell_types": cell_types,
        "heldout_cell_types": np.array(programs.heldout, dtype=str),
        "training_cell_types": [t for t in cell_types if t not in programs.heldout],
        "conditions": list(_CONDITIONS),
        "acceleration_months": conditions.acceleration,
        "accelerated_cell_type": {
            c: (cell_types[accel_type[i]] if accel_type[i] >= 0 else "")
            for i, c in enumerate(_CONDITIONS)
        },
        "marker_cell_type": {
            c: (cell_types[marker_type[i]] if marker_type[i] >= 0 else "")
            for i, c in enumerate(_CONDITIONS)
        },
        "programs": programs.names,
        "program_shape": programs.shapes,
        "program_tfs": program_tfs,
        "program_cell_type": [""] * n_shared + cell_types,
        "cell_type_program_gain": programs.gain,
        "cell_type_program_shift": programs.shift,
        "age_grid_months": _AGE_GRID_MONTHS.copy(),
        "program_activity_female": curves["female"],
        "program_activity_male": curves["male"],
        "donors": atlas.donors.names,
        "donor_program_deviation": atlas.donors.program_deviation,
        "library_size_range": np.array([p.library_size / 4, p.library_size * 4]),
        "n_counts_range": np.array([p.library_size / 10, p.library_size * 10]),
    }


def _simulate(p: _Params) -> AnnData:
    """Run every stage of the generator on validated arguments (see the module docstring)."""
    n_cells, n_genes = p.n_cells, p.n_genes
    start = logg.info(
        f"simulating aging atlas: {p.n_donors} donors x {p.n_cells_per_donor} cells,"
        f" {n_genes} genes"
    )
    # independent streams: genes, donors, cells (gene parameters do not depend on the donors)
    rng_genes, rng_donors, rng_cells = (
        np.random.default_rng(s) for s in np.random.SeedSequence(p.seed).spawn(3)
    )
    programs = _cell_type_programs(p, rng_genes)
    genes = _simulate_genes(p, programs, rng_genes)
    donors = _simulate_donors(p, programs, genes, rng_donors)
    conditions = _condition_effects(p, programs.cell_types)
    cells = _sample_cells(p, donors, conditions, rng_cells)
    atlas = _Atlas(p, programs, genes, donors, conditions, cells)
    X, n_counts, activity = _simulate_counts(atlas, rng_cells)

    adata = AnnData(
        X=X,
        obs=_obs_table(atlas, n_counts),
        var=_var_table(genes),
        uns={"aging_atlas": _ground_truth(atlas)},
    )
    adata.varm["aging_atlas_cell_type_offset"] = genes.offset.T.copy()
    adata.varm["aging_atlas_loadings"] = genes.program_loadings
    adata.obsm["aging_atlas_activity"] = activity
    logg.info(
        f"    finished: {n_cells} cells x {n_genes} genes, {X.nnz / max(1, n_cells * n_genes):.1%}"
        " non-zero",
        time=start,
    )
    return adata


def aging_atlas(
    *,
    n_donors: int = 40,
    n_cells_per_donor: int = 100,
    n_genes: int = 1500,
    n_cell_types: int = 6,
    n_heldout_cell_types: int = 1,
    disease_fraction: float = 0.3,
    fibrosis_acceleration_months: int = 180,
    alzheimer_acceleration_months: int = 60,
    max_age_years: float = 95.0,
    library_size: float = 4000.0,
    age_effect: float = 1.0,
    donor_noise: float = 0.25,
    cell_noise: float = 0.15,
    dropout: float = 0.3,
    seed: int = 0,
) -> AnnData:
    r"""Simulated human aging atlas with known ground truth (raw counts).

    The embedded default data set of :mod:`maxtoki`: donors from birth to old age, several cell
    types whose aging is driven by transcription factors (TFs), donor, library-size and sampling
    noise, held-out cell types and disease groups with planted age acceleration. Every later
    capability (tokenisation, training, age prediction, age acceleration, attention, generation)
    can be checked against what was planted. See ``docs/atlas.md`` for a longer explanation.

    **Generative model** (in full: docstring of module ``maxtoki.datasets._aging_atlas``): TF-driven
    aging programs and cell-type, sex, donor and disease effects set negative-binomial counts.

    Parameters
    ----------
    n_donors
        Number of donors (at least 4). ``round(disease_fraction * n_donors)`` of them are split
        over ``fibrosis``, ``alzheimer`` and ``resilient``; the rest are controls.
    n_cells_per_donor
        Cells sampled from each donor (at least 1); cell-type proportions vary by donor
        (Dirichlet around equal proportions).
    n_genes
        Number of genes (at least 200, more with many cell types; the error says the minimum).
    n_cell_types
        Number of cell types (3–12), taken in order from fibroblast, microglia, CD4 T cell,
        B cell, classical monocyte, endothelial cell, NK cell, hepatocyte, keratinocyte,
        alveolar type 2 cell, cardiomyocyte, oligodendrocyte.
    n_heldout_cell_types
        How many of the last cell types are marked as held out (for evaluation on unseen
        types); 0 to ``n_cell_types - 2`` (fibroblast and microglia are never held out).
    disease_fraction
        Fraction of donors that are not controls, in [0, 0.5).
    fibrosis_acceleration_months
        Planted acceleration of fibroblasts of ``fibrosis`` donors (0–600 months).
    alzheimer_acceleration_months
        Planted acceleration of microglia of ``alzheimer`` donors (0–600 months).
    max_age_years
        Age of the oldest control donors (90–120 years).
    library_size
        Median target library size (total counts) of a cell, 100–1,000,000.
    age_effect
        Scales every aging loading (0–5); 0 removes the age signal entirely.
    donor_noise
        Standard deviation of donor effects on log expression (0–2); a tenth of it also shifts
        each donor's program activities.
    cell_noise
        Standard deviation of the per-cell program activity noise (0–2; activities span about
        0–1 over life).
    dropout
        Maximum extra dropout probability for lowly expressed genes, in [0, 1).
    seed
        Seed of :func:`numpy.random.default_rng`; the same arguments give identical ``X``,
        ``obs`` and ``var``.

    Returns
    -------
    AnnData
        ``n_donors * n_cells_per_donor`` cells ordered by donor (names like ``'D07-42'``:
        donor, then cell; donors are numbered controls first, by age with sexes alternating,
        then fibrosis, alzheimer and resilient donors) and ``n_genes`` genes in random order
        (symbols as ``var_names``, e.g. ``TFSEN1``, ``SEN12``, ``HKG3``, ``FIBM5``,
        ``GENE77``), with these slots:

        ``X``
            Raw counts, :class:`scipy.sparse.csr_matrix` of dtype ``int32``.
        ``obs['donor']``, ``obs['sex']``, ``obs['cell_type']``, ``obs['condition']``
            Categoricals; sex is ``'female'``/``'male'``; condition one of ``'control'``,
            ``'fibrosis'``, ``'alzheimer'``, ``'resilient'``.
        ``obs['age_months']``, ``obs['age_years']``
            Chronological age of the donor (int32 months; float years).
        ``obs['planted_acceleration_months']``
            Planted age acceleration of the cell (int32; non-zero only in the affected cell
            type of ``fibrosis``/``alzheimer`` donors).
        ``obs['biological_age_months']``
            ``age_months + planted_acceleration_months``: the age the cell's programs run at.
        ``obs['heldout_cell_type']``
            Whether the cell's type is one of the held-out types (bool).
        ``obs['disease_marker_cell']``
            Whether the cell expresses disease markers (bool; resilient microglia included).
        ``obs['n_counts']``
            Total counts of the cell (int64).
        ``var['ensembl_id']``
            Synthetic Ensembl-style IDs ``ENSG9`` + 10 digits (match ``^ENSG\d{11}$``, never a
            real human gene), numbered in ``var`` order.  A vocabulary built from the atlas is
            needed to tokenise it: none of these IDs is in the official MaxToki vocabulary.
        ``var['gene_kind']``
            One of ``housekeeping``, ``age_tf``, ``identity_tf``, ``other_tf``,
            ``program_target``, ``private_target``, ``cell_type_marker``, ``sex_female``,
            ``sex_male``, ``disease_fibrosis``, ``disease_alzheimer``, ``background``.
        ``var['is_tf']``, ``var['is_housekeeping']``
            Transcription factors (age-driving, identity and other TFs); housekeeping genes.
        ``var['age_program']``
            Program the gene belongs to (driver TFs, targets, private targets), else ``""``.
        ``var['age_trend']``
            ``'increasing'``, ``'decreasing'`` or ``'non-monotonic'`` with age (sign of the
            loading times the program's shape, also when ``age_effect=0``), else ``""``.
        ``var['regulators']``
            Comma-separated symbols of the TFs driving a target gene, else ``""``.
        ``var['program_loading']``
            Total loading of the gene on its program's latent activity, else 0.
        ``var['cell_type_marker']``, ``var['sex_specific']``, ``var['disease_marker']``
            Cell type the gene marks (markers and identity TFs) / ``'female'``, ``'male'`` /
            ``'fibrosis'``, ``'alzheimer'``; else ``""``.
        ``var['baseline_log_expression']``, ``var['nb_dispersion']``
            :math:`\beta_g` and the negative-binomial size :math:`r_g`.
        ``varm['aging_atlas_cell_type_offset']``
            :math:`o_{kg}` as genes × cell types (columns in the order of
            ``uns['aging_atlas']['cell_types']``).
        ``varm['aging_atlas_loadings']``
            Loadings genes × programs (summed over each program's TFs; columns in
            ``uns['aging_atlas']['programs']``).
        ``obsm['aging_atlas_activity']``
            Cells × programs: ``a_p(biological age, sex) + donor deviation + cell noise``
            (before the per-type gain and shift; float32).
        ``uns['aging_atlas']``
            ``params`` (the arguments), ``cell_types``, ``heldout_cell_types``,
            ``training_cell_types``, ``conditions``, ``acceleration_months``,
            ``accelerated_cell_type`` and ``marker_cell_type`` (per condition, ``""`` for none),
            ``programs``, ``program_shape``, ``program_tfs``, ``program_cell_type`` (``""`` for
            shared programs), ``cell_type_program_gain`` and ``cell_type_program_shift``
            (cell types × programs), ``age_grid_months`` with ``program_activity_female`` and
            ``program_activity_male`` (programs × grid; the private programs have no sex
            difference), ``donors`` with ``donor_program_deviation`` (donors × programs),
            ``library_size_range`` and ``n_counts_range`` (documented bounds).

    Examples
    --------
    >>> import maxtoki as mt
    >>> adata = mt.datasets.aging_atlas(n_donors=8, n_cells_per_donor=20, n_genes=400)
    >>> bool(adata.obs["age_months"].max() >= 90 * 12)
    True
    """
    return _simulate(_check_arguments(locals()))  # locals(): just the arguments, by name
