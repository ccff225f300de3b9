"""The simulated human aging atlas with known ground truth: :func:`maxtoki.datasets.aging_atlas`."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import logging as logg

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

#: Shared, TF-driven aging programs: name, shape, symbol tag of their genes.
_SHARED_PROGRAMS = (
    ("development", "decreasing", "DEV"),
    ("maturation", "non-monotonic", "MAT"),
    ("midlife", "non-monotonic", "MID"),
    ("inflammaging", "increasing", "INFL"),
    ("senescence", "increasing", "SEN"),
    ("proteostasis", "decreasing", "PROT"),
    ("sex_hormone", "non-monotonic", "HORM"),
)
_N_TF_PER_PROGRAM = 2
_HELDOUT_SHIFT = 0.12  # how much younger held-out types look on monotonic programs (activity)
_CHUNK_ELEMENTS = 3_000_000  # cells x genes generated at once (~12 MB per float32 array)
_AGE_GRID_MONTHS = np.arange(0, 1441, 12)  # 0-120 years, yearly, for the recorded curves


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _shared_activity(t: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Activity (about 0–1) of the shared programs at age ``t`` in years; shape ``(n, 7)``."""
    t = np.asarray(t, dtype=np.float64)
    female = np.asarray(female, dtype=bool)
    horm_f = _sigmoid((t - 12.5) / 1.5) * (1.0 - 0.85 * _sigmoid((t - 50.0) / 2.5))
    horm_m = _sigmoid((t - 13.5) / 1.5) * (1.0 - 0.5 * np.clip((t - 30.0) / 60.0, 0.0, 1.0))
    return np.stack(
        [
            np.exp(-t / 7.0),  # development: high at birth, gone by the twenties
            np.exp(-0.5 * ((t - 20.0) / 8.0) ** 2),  # maturation: peaks at 20 years
            np.exp(-0.5 * ((t - 50.0) / 12.0) ** 2),  # midlife: peaks at 50 years
            _sigmoid((t - 60.0) / 10.0),  # inflammaging: rises late
            t / 90.0,  # senescence: linear increase
            1.0 - (t / 95.0) ** 2,  # proteostasis: slow, then faster decline
            np.where(female, horm_f, horm_m),  # sex hormones: puberty, menopause / slow decline
        ],
        axis=1,
    )


def _private_activity(t: np.ndarray, midpoints: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Activity of the cell-type-specific programs (monotonic sigmoids); shape ``(n, n_types)``."""
    up = _sigmoid((np.asarray(t, dtype=np.float64)[:, None] - midpoints[None, :]) / 15.0)
    return np.where(directions[None, :] > 0, up, 1.0 - up)


def _grow(buffer: np.ndarray, size: int) -> np.ndarray:
    """Resize a 1-d buffer in place where possible (no second copy in memory)."""
    try:
        buffer.resize(size, refcheck=False)
    except ValueError:  # not owning its memory
        buffer = np.resize(buffer, size)
    return buffer


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


def _gene_plan(n_genes: int, n_types: int) -> list[tuple[str, int]]:
    """How many genes of each kind; the background takes what is left."""
    n_tf_age = _N_TF_PER_PROGRAM * len(_SHARED_PROGRAMS)
    plan = [
        ("housekeeping", max(5, round(0.04 * n_genes))),
        ("age_tf", n_tf_age),
        ("identity_tf", 2 * n_types),
        ("other_tf", max(3, round(0.02 * n_genes))),
        ("program_target", max(3 * len(_SHARED_PROGRAMS), round(0.2 * n_genes))),
        ("private_target", n_types * max(3, round(0.01 * n_genes))),
        ("cell_type_marker", n_types * max(3, round(0.02 * n_genes))),
        ("sex_female", 3),
        ("sex_male", 5),
        ("disease_fibrosis", max(4, round(0.006 * n_genes))),
        ("disease_alzheimer", max(4, round(0.006 * n_genes))),
    ]
    n_background = n_genes - sum(n for _, n in plan)
    plan.append(("background", n_background))
    return plan


def _min_genes(n_types: int) -> int:
    """Smallest ``n_genes`` that leaves at least 20 background genes."""
    n = 100
    while _gene_plan(n, n_types)[-1][1] < 20:
        n += 1
    return n


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
    n_donors = _check_int("n_donors", n_donors, 4)
    n_cells_per_donor = _check_int("n_cells_per_donor", n_cells_per_donor, 1)
    n_cell_types = _check_int("n_cell_types", n_cell_types, 3, len(_CELL_TYPES))
    n_heldout = _check_int("n_heldout_cell_types", n_heldout_cell_types, 0, n_cell_types - 2)
    min_genes = max(200, _min_genes(n_cell_types))
    n_genes = _check_int("n_genes", n_genes, min_genes)
    disease_fraction = _check_real("disease_fraction", disease_fraction, 0.0, 0.5, open_max=True)
    acc_fib = _check_int("fibrosis_acceleration_months", fibrosis_acceleration_months, 0, 600)
    acc_ad = _check_int("alzheimer_acceleration_months", alzheimer_acceleration_months, 0, 600)
    max_age_years = _check_real("max_age_years", max_age_years, 90.0, 120.0)
    library_size = _check_real("library_size", library_size, 100.0, 1e6)
    age_effect = _check_real("age_effect", age_effect, 0.0, 5.0)
    donor_noise = _check_real("donor_noise", donor_noise, 0.0, 2.0)
    cell_noise = _check_real("cell_noise", cell_noise, 0.0, 2.0)
    dropout = _check_real("dropout", dropout, 0.0, 1.0, open_max=True)
    seed = _check_int("seed", seed, 0)
    n_cells = n_donors * n_cells_per_donor
    start = logg.info(
        f"simulating aging atlas: {n_donors} donors x {n_cells_per_donor} cells, {n_genes} genes"
    )

    # independent streams: genes, donors, cells (gene parameters do not depend on the donors)
    rng_genes, rng_donors, rng_cells = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )

    cell_types = list(_CELL_TYPES[:n_cell_types])
    tags = _CELL_TYPE_TAGS[:n_cell_types]
    heldout = cell_types[n_cell_types - n_heldout :] if n_heldout else []
    is_heldout_type = np.array([t in heldout for t in cell_types])
    n_shared = len(_SHARED_PROGRAMS)
    n_programs = n_shared + n_cell_types
    programs = [p[0] for p in _SHARED_PROGRAMS] + [
        f"{t.replace(' ', '_')}_aging" for t in cell_types
    ]

    # ---------------------------------------------------------------- programs (per cell type)
    priv_mid = rng_genes.uniform(25.0, 65.0, n_cell_types)
    priv_dir = np.where(np.arange(n_cell_types) % 2 == 0, 1.0, -1.0)
    rng_genes.shuffle(priv_dir)
    shapes = [p[1] for p in _SHARED_PROGRAMS] + [
        "increasing" if d > 0 else "decreasing" for d in priv_dir
    ]
    gain = np.zeros((n_cell_types, n_programs))
    gain[:, :n_shared] = rng_genes.uniform(0.6, 1.4, (n_cell_types, n_shared))
    gain[:, n_shared:] = np.eye(n_cell_types)
    shift = np.zeros((n_cell_types, n_programs))
    shift[:, :n_shared] = rng_genes.normal(0.0, 0.25, (n_cell_types, n_shared))
    shift[~is_heldout_type, :n_shared] -= shift[~is_heldout_type, :n_shared].mean(axis=0)
    # held-out types look younger than they are on the monotonic programs (relative to the
    # training types, whose shifts average 0): a global model trained on the other types is
    # biased there, comparing with same-type context is not
    direction = np.array([{"increasing": 1.0, "decreasing": -1.0}.get(s, 0.0) for s in shapes])
    mono_shared = direction[:n_shared] != 0
    shift[np.ix_(is_heldout_type, mono_shared)] = -_HELDOUT_SHIFT * direction[:n_shared][
        mono_shared
    ] + rng_genes.normal(0.0, 0.03, (n_heldout, mono_shared.sum()))

    # ---------------------------------------------------------------------------------- genes
    plan = _gene_plan(n_genes, n_cell_types)
    kind = np.concatenate([np.full(n, k, dtype=object) for k, n in plan])
    symbols = np.empty(n_genes, dtype=object)
    age_program = np.full(n_genes, "", dtype=object)
    regulators = np.full(n_genes, "", dtype=object)
    marker_of = np.full(n_genes, "", dtype=object)
    sex_specific = np.full(n_genes, "", dtype=object)
    disease_marker = np.full(n_genes, "", dtype=object)
    base = np.zeros(n_genes)
    r_nb = np.exp(rng_genes.normal(np.log(4.0), 0.5, n_genes)).clip(1.0, 20.0)
    n_factors = n_shared * _N_TF_PER_PROGRAM + n_cell_types  # TF latents + private programs
    factor_program = np.concatenate(
        [np.repeat(np.arange(n_shared), _N_TF_PER_PROGRAM), n_shared + np.arange(n_cell_types)]
    )
    loadings = np.zeros((n_genes, n_factors))
    offset = rng_genes.normal(0.0, 0.4, (n_cell_types, n_genes))  # identity: every gene a bit
    sex_eff = np.zeros((2, n_genes))  # rows: female, male
    disease_eff = np.zeros((2, n_genes))  # rows: fibrosis markers, alzheimer markers

    def idx(k: str) -> np.ndarray:
        return np.flatnonzero(kind == k)

    g = idx("housekeeping")
    symbols[g] = [f"HKG{i + 1}" for i in range(g.size)]
    base[g] = rng_genes.normal(3.2, 0.3, g.size)
    offset[:, g] *= 0.1
    r_nb[g] = 30.0

    g = idx("age_tf")
    tf_symbol = {}
    for j, gene in enumerate(g):
        p, t = divmod(j, _N_TF_PER_PROGRAM)
        name, _, tag = _SHARED_PROGRAMS[p]
        symbols[gene] = tf_symbol[j] = f"TF{tag}{t + 1}"
        age_program[gene] = name
        loadings[gene, j] = rng_genes.uniform(1.4, 2.0)
    base[g] = rng_genes.normal(1.5, 0.4, g.size)

    g = idx("identity_tf")
    for j, gene in enumerate(g):
        k, t = divmod(j, 2)
        symbols[gene] = f"TF{tags[k]}{t + 1}"
        marker_of[gene] = cell_types[k]
        offset[k, gene] += 3.0
    base[g] = rng_genes.normal(-1.0, 0.5, g.size)

    g = idx("other_tf")
    symbols[g] = [f"TFX{i + 1}" for i in range(g.size)]
    base[g] = rng_genes.normal(0.0, 1.0, g.size)

    g = idx("program_target")
    per_program = np.array_split(g, n_shared)
    counters = dict.fromkeys(range(n_shared), 0)
    for p, genes in enumerate(per_program):
        name, _, tag = _SHARED_PROGRAMS[p]
        for gene in genes:
            counters[p] += 1
            symbols[gene] = f"{tag}{counters[p]}"
            age_program[gene] = name
            magnitude = rng_genes.uniform(0.6, 1.6) * (1.0 if rng_genes.random() < 0.75 else -1.0)
            tfs = p * _N_TF_PER_PROGRAM + np.arange(_N_TF_PER_PROGRAM)
            if rng_genes.random() < 0.7:
                tfs = tfs[[rng_genes.integers(_N_TF_PER_PROGRAM)]]
            loadings[gene, tfs] = magnitude / tfs.size
            regulators[gene] = ",".join(tf_symbol[f] for f in tfs)
    base[g] = rng_genes.normal(1.2, 0.9, g.size)

    g = idx("private_target")
    for k, genes in enumerate(np.array_split(g, n_cell_types)):
        for i, gene in enumerate(genes):
            symbols[gene] = f"{tags[k]}AGE{i + 1}"
            age_program[gene] = programs[n_shared + k]
            sign = 1.0 if rng_genes.random() < 0.75 else -1.0
            loadings[gene, n_shared * _N_TF_PER_PROGRAM + k] = sign * rng_genes.uniform(0.6, 1.4)
    base[g] = rng_genes.normal(1.0, 0.8, g.size)

    g = idx("cell_type_marker")
    for k, genes in enumerate(np.array_split(g, n_cell_types)):
        symbols[genes] = [f"{tags[k]}M{i + 1}" for i in range(genes.size)]
        marker_of[genes] = cell_types[k]
        offset[k, genes] += rng_genes.uniform(2.5, 4.0, genes.size)
    base[g] = rng_genes.normal(-1.5, 0.7, g.size)

    g = idx("sex_female")
    symbols[g] = [f"XF{i + 1}" for i in range(g.size)]
    sex_specific[g] = "female"
    base[g] = rng_genes.normal(0.5, 0.3, g.size)
    sex_eff[0, g], sex_eff[1, g] = 3.0, -4.0

    g = idx("sex_male")
    symbols[g] = [f"YM{i + 1}" for i in range(g.size)]
    sex_specific[g] = "male"
    base[g] = rng_genes.normal(0.5, 0.3, g.size)
    sex_eff[0, g], sex_eff[1, g] = -4.0, 3.0

    for row, (k, tag) in enumerate((("fibrosis", "FIBROSIS"), ("alzheimer", "AD"))):
        g = idx(f"disease_{k}")
        symbols[g] = [f"{tag}{i + 1}" for i in range(g.size)]
        disease_marker[g] = k
        base[g] = rng_genes.normal(-1.5, 0.5, g.size)
        disease_eff[row, g] = 2.5

    g = idx("background")
    symbols[g] = [f"GENE{i + 1}" for i in range(g.size)]
    base[g] = rng_genes.normal(-0.5, 1.4, g.size)

    # program genes: their own baseline per cell type, plus the type's shift along each program
    is_program_gene = age_program != ""
    offset[:, is_program_gene] += rng_genes.normal(0.0, 0.3, (n_cell_types, is_program_gene.sum()))
    program_loadings = np.zeros((n_genes, n_programs))
    np.add.at(program_loadings.T, factor_program, loadings.T)
    # trend of each program gene with age: the program's shape times the sign of the loading
    trend = np.full(n_genes, "", dtype=object)
    for gi in np.flatnonzero(is_program_gene):
        p = int(np.flatnonzero(program_loadings[gi])[0])
        if shapes[p] == "non-monotonic":
            trend[gi] = "non-monotonic"
        else:
            up = (shapes[p] == "increasing") == (program_loadings[gi, p] > 0)
            trend[gi] = "increasing" if up else "decreasing"
    loadings *= age_effect
    program_loadings *= age_effect
    offset += shift @ program_loadings.T

    # genes in random order (so IDs and positions say nothing about the kind of gene)
    perm = rng_genes.permutation(n_genes)
    kind, symbols, age_program, regulators = (
        kind[perm],
        symbols[perm],
        age_program[perm],
        regulators[perm],
    )
    marker_of, sex_specific, disease_marker = (
        marker_of[perm],
        sex_specific[perm],
        disease_marker[perm],
    )
    base, r_nb, is_program_gene, trend = base[perm], r_nb[perm], is_program_gene[perm], trend[perm]
    loadings, program_loadings = loadings[perm], program_loadings[perm]
    offset, sex_eff, disease_eff = offset[:, perm], sex_eff[:, perm], disease_eff[:, perm]

    # ------------------------------------------------------------------------------- donors
    n_noncontrol = round(disease_fraction * n_donors)
    n_per_condition = [n_noncontrol // 3 + (i < n_noncontrol % 3) for i in range(3)]
    n_control = n_donors - n_noncontrol
    max_age_months = max_age_years * 12.0
    # controls: alternate sexes, ages spread over the whole life span for each sex
    donor_female = np.zeros(n_donors, dtype=bool)
    donor_age = np.zeros(n_donors)
    donor_condition = np.zeros(n_donors, dtype=np.int64)
    n_f = (n_control + 1) // 2
    donor_female[:n_control] = np.arange(n_control) < n_f
    floor = 90.0 * 12.0  # the oldest control of each sex (when there are 2+) is 90 or older
    donor_age[:n_f] = _stratified_ages(n_f, 0.0, max_age_months, rng_donors, top_floor=floor)
    donor_age[n_f:n_control] = _stratified_ages(
        n_control - n_f, 0.0, max_age_months, rng_donors, top_floor=floor
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
        donor_age[sl] = rng_donors.permutation(
            _stratified_ages(n, 0.55 * max_age_months, 0.95 * max_age_months, rng_donors)
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
    donor_female, donor_age, donor_condition = (
        donor_female[order], donor_age[order], donor_condition[order]
    )  # fmt: skip
    width = max(2, len(str(n_donors - 1)))
    donor_names = [f"D{i:0{width}d}" for i in range(n_donors)]
    donor_effect = rng_donors.standard_normal((n_donors, n_genes), dtype=np.float32)
    donor_effect *= np.float32(donor_noise)
    donor_effect[:, kind == "housekeeping"] *= np.float32(0.1)
    donor_dev = rng_donors.normal(0.0, 0.1 * donor_noise, (n_donors, n_programs))
    donor_lib = rng_donors.normal(0.0, 0.15, n_donors)
    composition = rng_donors.dirichlet(np.full(n_cell_types, 10.0), n_donors)

    acceleration = {"control": 0, "fibrosis": acc_fib, "alzheimer": acc_ad, "resilient": 0}
    accel_type = np.full(len(_CONDITIONS), -1)
    marker_type = np.full(len(_CONDITIONS), -1)
    marker_row = np.full(len(_CONDITIONS), -1)
    for c, cond in enumerate(_CONDITIONS):
        if cond in _AFFECTED:
            acc_t, mark_t, mark_set = _AFFECTED[cond]
            accel_type[c] = cell_types.index(acc_t) if acc_t and acceleration[cond] else -1
            marker_type[c] = cell_types.index(mark_t)
            marker_row[c] = ("fibrosis", "alzheimer").index(mark_set)
    accel_by_condition = np.array([acceleration[c] for c in _CONDITIONS])

    # -------------------------------------------------------------------------------- cells
    cell_donor = np.repeat(np.arange(n_donors), n_cells_per_donor)
    cell_type = np.empty(n_cells, dtype=np.int64)
    for d in range(n_donors):
        cell_type[d * n_cells_per_donor : (d + 1) * n_cells_per_donor] = rng_cells.choice(
            n_cell_types, n_cells_per_donor, p=composition[d]
        )
    cell_cond = donor_condition[cell_donor]
    affected = accel_type[cell_cond] == cell_type
    planted = np.where(affected, accel_by_condition[cell_cond], 0).astype(np.int32)
    marker_cell = marker_type[cell_cond] == cell_type
    age_months = donor_age[cell_donor]
    bio_age = age_months + planted
    log_lib = (
        np.log(library_size) + donor_lib[cell_donor] + rng_cells.normal(0.0, 0.35, n_cells)
    ).clip(np.log(library_size / 4), np.log(library_size * 4))

    shared_f = np.ascontiguousarray(base[None, :] + sex_eff[0][None, :], dtype=np.float32)
    shared_m = np.ascontiguousarray(base[None, :] + sex_eff[1][None, :], dtype=np.float32)
    offset32 = offset.astype(np.float32)
    disease32 = disease_eff.astype(np.float32)
    loadings_t = np.ascontiguousarray(loadings.T, dtype=np.float32)  # factors x genes
    r32 = r_nb.astype(np.float32)
    is_hk = kind == "housekeeping"
    type_weights = np.exp(base[None, :] + offset)
    hk_share = type_weights[:, is_hk].sum(axis=1) / type_weights.sum(axis=1)
    tf_noise_sd = 0.5 * cell_noise

    activity = np.empty((n_cells, n_programs), dtype=np.float32)
    # CSR data and column indices, filled chunk by chunk into buffers sized from the first chunk
    data = np.zeros(0, dtype=np.int32)
    indices = np.zeros(0, dtype=np.int32)
    nnz = 0
    row_nnz = np.zeros(n_cells, dtype=np.int64)
    n_counts = np.zeros(n_cells, dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // n_genes)
    for lo in range(0, n_cells, chunk):
        hi = min(n_cells, lo + chunk)
        m = hi - lo
        d, k = cell_donor[lo:hi], cell_type[lo:hi]
        female = donor_female[d]
        t_years = bio_age[lo:hi] / 12.0
        act = np.empty((m, n_programs))
        act[:, :n_shared] = _shared_activity(t_years, female)
        act[:, n_shared:] = _private_activity(t_years, priv_mid, priv_dir)
        act += donor_dev[d] + rng_cells.normal(0.0, cell_noise, (m, n_programs))
        activity[lo:hi] = act
        z = gain[k][:, factor_program] * (
            act[:, factor_program] + rng_cells.normal(0.0, tf_noise_sd, (m, n_factors))
        ) + shift[k][:, factor_program]  # fmt: skip
        eta = z.astype(np.float32) @ loadings_t
        eta += np.where(female[:, None], shared_f, shared_m)
        eta += offset32[k]
        eta += donor_effect[d]
        rows = np.flatnonzero(marker_cell[lo:hi])
        if rows.size:
            eta[rows] += disease32[marker_row[cell_cond[lo + rows]]]
        eta -= eta.max(axis=1, keepdims=True)
        np.exp(eta, out=eta)
        # housekeeping genes keep a fixed share of the library (flat after normalisation);
        # the rest of the library is spread over the other genes by a softmax
        lib = np.exp(log_lib[lo:hi])
        scale_hk = lib * hk_share[k] / eta[:, is_hk].sum(axis=1, dtype=np.float64)
        scale_rest = lib * (1.0 - hk_share[k]) / eta[:, ~is_hk].sum(axis=1, dtype=np.float64)
        eta *= np.where(
            is_hk[None, :],
            scale_hk[:, None].astype(np.float32),
            scale_rest[:, None].astype(np.float32),
        )
        mu = eta
        lam = rng_cells.standard_gamma(np.broadcast_to(r32, (m, n_genes)), dtype=np.float32)
        lam *= mu / r32
        counts = rng_cells.poisson(lam)
        if dropout > 0:
            p_drop = dropout * _sigmoid(-1.5 * np.log(np.maximum(mu, 1e-12)))
            counts[rng_cells.random((m, n_genes), dtype=np.float32) < p_drop] = 0
        flat = np.flatnonzero(counts)
        if nnz + flat.size > data.size:
            estimate = int(1.05 * (nnz + flat.size) / hi * n_cells) + 1024
            capacity = max(estimate, nnz + flat.size, int(1.25 * data.size))
            data = _grow(data, capacity)
            indices = _grow(indices, capacity)
        data[nnz : nnz + flat.size] = counts.ravel()[flat]
        indices[nnz : nnz + flat.size] = flat % n_genes
        nnz += flat.size
        row_nnz[lo:hi] = np.bincount(flat // n_genes, minlength=m)
        n_counts[lo:hi] = counts.sum(axis=1)
        del eta, mu, lam, counts, flat

    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    if nnz < data.size:  # give back the unused tail of the buffers
        data = _grow(data, nnz)
        indices = _grow(indices, nnz)
    if nnz <= np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes), copy=False)

    # --------------------------------------------------------------------------- annotations
    ensembl = [f"ENSG9{i + 1:010d}" for i in range(n_genes)]
    var = pd.DataFrame(
        {
            "ensembl_id": ensembl,
            "gene_kind": pd.Categorical(kind, categories=[k for k, _ in plan]),
            "is_tf": np.char.endswith(kind.astype(str), "_tf"),
            "is_housekeeping": kind == "housekeeping",
            "age_program": age_program.astype(str),
            "age_trend": trend.astype(str),
            "regulators": regulators.astype(str),
            "program_loading": program_loadings.sum(axis=1),
            "cell_type_marker": marker_of.astype(str),
            "sex_specific": sex_specific.astype(str),
            "disease_marker": disease_marker.astype(str),
            "baseline_log_expression": base,
            "nb_dispersion": r_nb,
        },
        index=pd.Index(symbols.astype(str), name="gene_symbol"),
    )
    cell_width = len(str(n_cells_per_donor - 1))
    obs_names = [
        f"{donor_names[d]}-{j:0{cell_width}d}"
        for d in range(n_donors)
        for j in range(n_cells_per_donor)
    ]
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical.from_codes(cell_donor, categories=donor_names),
            "sex": pd.Categorical.from_codes(
                np.where(donor_female[cell_donor], 0, 1), categories=["female", "male"]
            ),
            "age_months": age_months.astype(np.int32),
            "age_years": age_months / 12.0,
            "cell_type": pd.Categorical.from_codes(cell_type, categories=cell_types),
            "heldout_cell_type": is_heldout_type[cell_type],
            "condition": pd.Categorical.from_codes(cell_cond, categories=list(_CONDITIONS)),
            "planted_acceleration_months": planted,
            "biological_age_months": bio_age.astype(np.int32),
            "disease_marker_cell": marker_cell,
            "n_counts": n_counts,
        },
        index=pd.Index(obs_names, name="cell"),
    )

    grid_years = _AGE_GRID_MONTHS / 12.0
    curves = {}
    for sex, female in (("female", True), ("male", False)):
        fem = np.full(grid_years.size, female)
        curves[sex] = np.concatenate(
            [
                _shared_activity(grid_years, fem),
                _private_activity(grid_years, priv_mid, priv_dir),
            ],
            axis=1,
        ).T
    program_tfs = [
        ",".join(tf_symbol[p * _N_TF_PER_PROGRAM + t] for t in range(_N_TF_PER_PROGRAM))
        for p in range(n_shared)
    ] + [""] * n_cell_types
    params = {
        "n_donors": n_donors,
        "n_cells_per_donor": n_cells_per_donor,
        "n_genes": n_genes,
        "n_cell_types": n_cell_types,
        "n_heldout_cell_types": n_heldout,
        "disease_fraction": disease_fraction,
        "fibrosis_acceleration_months": acc_fib,
        "alzheimer_acceleration_months": acc_ad,
        "max_age_years": max_age_years,
        "library_size": library_size,
        "age_effect": age_effect,
        "donor_noise": donor_noise,
        "cell_noise": cell_noise,
        "dropout": dropout,
        "seed": seed,
    }
    uns = {
        "params": params,
        "cell_types": cell_types,
        "heldout_cell_types": np.array(heldout, dtype=str),
        "training_cell_types": [t for t in cell_types if t not in heldout],
        "conditions": list(_CONDITIONS),
        "acceleration_months": acceleration,
        "accelerated_cell_type": {
            c: (cell_types[accel_type[i]] if accel_type[i] >= 0 else "")
            for i, c in enumerate(_CONDITIONS)
        },
        "marker_cell_type": {
            c: (cell_types[marker_type[i]] if marker_type[i] >= 0 else "")
            for i, c in enumerate(_CONDITIONS)
        },
        "programs": programs,
        "program_shape": shapes,
        "program_tfs": program_tfs,
        "program_cell_type": [""] * n_shared + cell_types,
        "cell_type_program_gain": gain,
        "cell_type_program_shift": shift,
        "age_grid_months": _AGE_GRID_MONTHS.copy(),
        "program_activity_female": curves["female"],
        "program_activity_male": curves["male"],
        "donors": donor_names,
        "donor_program_deviation": donor_dev,
        "library_size_range": np.array([library_size / 4, library_size * 4]),
        "n_counts_range": np.array([library_size / 10, library_size * 10]),
    }
    adata = AnnData(X=X, obs=obs, var=var, uns={"aging_atlas": uns})
    adata.varm["aging_atlas_cell_type_offset"] = offset.T.copy()
    adata.varm["aging_atlas_loadings"] = program_loadings
    adata.obsm["aging_atlas_activity"] = activity
    logg.info(
        f"    finished: {n_cells} cells x {n_genes} genes, {X.nnz / max(1, n_cells * n_genes):.1%}"
        " non-zero",
        time=start,
    )
    return adata
