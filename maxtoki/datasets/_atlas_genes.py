"""Genes of the simulated aging atlas: the gene plan and every gene's parameters.

Used only by :mod:`maxtoki.datasets._aging_atlas` (see its docstring for the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._aging_atlas import _Params, _Programs

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


# ---------------------------------------------------------------------------------------- genes
@dataclass
class _Genes:
    """Every gene's annotation and effects; arrays over genes (in plan order until shuffled)."""

    plan: list[tuple[str, int]]
    kind: np.ndarray
    symbols: np.ndarray
    age_program: np.ndarray
    regulators: np.ndarray
    marker_of: np.ndarray
    sex_specific: np.ndarray
    disease_marker: np.ndarray
    base: np.ndarray  # baseline log expression
    r_nb: np.ndarray  # negative-binomial size
    loadings: np.ndarray  # genes x latent factors
    offset: np.ndarray  # cell types x genes
    sex_eff: np.ndarray  # rows: female, male
    disease_eff: np.ndarray  # rows: fibrosis markers, alzheimer markers
    program_loadings: np.ndarray  # genes x programs (loadings summed over a program's TFs)
    trend: np.ndarray  # 'increasing', 'decreasing', 'non-monotonic' or ''
    tf_symbol: dict[int, str]  # symbol of each driver TF, by its latent factor

    def of_kind(self, kind: str) -> np.ndarray:
        """Positions of the genes of one kind."""
        return np.flatnonzero(self.kind == kind)


def _new_genes(p: _Params, programs: _Programs, rng: np.random.Generator) -> _Genes:
    """Lay out the gene plan; draw every gene's dispersion and small cell-type offsets."""
    n_genes = p.n_genes
    plan = _gene_plan(n_genes, p.n_cell_types)
    kind = np.concatenate([np.full(n, k, dtype=object) for k, n in plan])
    r_nb = np.exp(rng.normal(np.log(4.0), 0.5, n_genes)).clip(1.0, 20.0)
    loadings = np.zeros((n_genes, programs.n_factors))
    offset = rng.normal(0.0, 0.4, (p.n_cell_types, n_genes))  # identity: every gene a bit
    return _Genes(
        plan=plan,
        kind=kind,
        symbols=np.empty(n_genes, dtype=object),
        age_program=np.full(n_genes, "", dtype=object),
        regulators=np.full(n_genes, "", dtype=object),
        marker_of=np.full(n_genes, "", dtype=object),
        sex_specific=np.full(n_genes, "", dtype=object),
        disease_marker=np.full(n_genes, "", dtype=object),
        base=np.zeros(n_genes),
        r_nb=r_nb,
        loadings=loadings,
        offset=offset,
        sex_eff=np.zeros((2, n_genes)),
        disease_eff=np.zeros((2, n_genes)),
        program_loadings=np.zeros((n_genes, programs.n_programs)),
        trend=np.full(n_genes, "", dtype=object),
        tf_symbol={},
    )


def _housekeeping_and_tf_genes(
    genes: _Genes, programs: _Programs, rng: np.random.Generator
) -> None:
    """Housekeeping genes, the TFs driving the shared programs, identity TFs and other TFs."""
    g = genes.of_kind("housekeeping")
    genes.symbols[g] = [f"HKG{i + 1}" for i in range(g.size)]
    genes.base[g] = rng.normal(3.2, 0.3, g.size)
    genes.offset[:, g] *= 0.1
    genes.r_nb[g] = 30.0

    g = genes.of_kind("age_tf")
    for j, gene in enumerate(g):
        p, t = divmod(j, _N_TF_PER_PROGRAM)
        name, _, tag = _SHARED_PROGRAMS[p]
        genes.symbols[gene] = genes.tf_symbol[j] = f"TF{tag}{t + 1}"
        genes.age_program[gene] = name
        genes.loadings[gene, j] = rng.uniform(1.4, 2.0)
    genes.base[g] = rng.normal(1.5, 0.4, g.size)

    g = genes.of_kind("identity_tf")
    for j, gene in enumerate(g):
        k, t = divmod(j, 2)
        genes.symbols[gene] = f"TF{programs.tags[k]}{t + 1}"
        genes.marker_of[gene] = programs.cell_types[k]
        genes.offset[k, gene] += 3.0
    genes.base[g] = rng.normal(-1.0, 0.5, g.size)

    g = genes.of_kind("other_tf")
    genes.symbols[g] = [f"TFX{i + 1}" for i in range(g.size)]
    genes.base[g] = rng.normal(0.0, 1.0, g.size)


def _aging_target_genes(genes: _Genes, programs: _Programs, rng: np.random.Generator) -> None:
    """Targets of the shared programs' TFs and the genes of each type's private program."""
    n_shared = programs.n_shared
    g = genes.of_kind("program_target")
    per_program = np.array_split(g, n_shared)
    counters = dict.fromkeys(range(n_shared), 0)
    for p, members in enumerate(per_program):
        name, _, tag = _SHARED_PROGRAMS[p]
        for gene in members:
            counters[p] += 1
            genes.symbols[gene] = f"{tag}{counters[p]}"
            genes.age_program[gene] = name
            magnitude = rng.uniform(0.6, 1.6) * (1.0 if rng.random() < 0.75 else -1.0)
            tfs = p * _N_TF_PER_PROGRAM + np.arange(_N_TF_PER_PROGRAM)
            if rng.random() < 0.7:
                tfs = tfs[[rng.integers(_N_TF_PER_PROGRAM)]]
            genes.loadings[gene, tfs] = magnitude / tfs.size
            genes.regulators[gene] = ",".join(genes.tf_symbol[f] for f in tfs)
    genes.base[g] = rng.normal(1.2, 0.9, g.size)

    g = genes.of_kind("private_target")
    for k, members in enumerate(np.array_split(g, len(programs.cell_types))):
        for i, gene in enumerate(members):
            genes.symbols[gene] = f"{programs.tags[k]}AGE{i + 1}"
            genes.age_program[gene] = programs.names[n_shared + k]
            sign = 1.0 if rng.random() < 0.75 else -1.0
            factor = n_shared * _N_TF_PER_PROGRAM + k
            genes.loadings[gene, factor] = sign * rng.uniform(0.6, 1.4)
    genes.base[g] = rng.normal(1.0, 0.8, g.size)


def _marker_and_background_genes(
    genes: _Genes, programs: _Programs, rng: np.random.Generator
) -> None:
    """Cell-type markers, sex-specific genes, disease markers and the background genes."""
    g = genes.of_kind("cell_type_marker")
    for k, members in enumerate(np.array_split(g, len(programs.cell_types))):
        genes.symbols[members] = [f"{programs.tags[k]}M{i + 1}" for i in range(members.size)]
        genes.marker_of[members] = programs.cell_types[k]
        genes.offset[k, members] += rng.uniform(2.5, 4.0, members.size)
    genes.base[g] = rng.normal(-1.5, 0.7, g.size)

    for sex, row, prefix in (("female", 0, "XF"), ("male", 1, "YM")):
        g = genes.of_kind(f"sex_{sex}")
        genes.symbols[g] = [f"{prefix}{i + 1}" for i in range(g.size)]
        genes.sex_specific[g] = sex
        genes.base[g] = rng.normal(0.5, 0.3, g.size)
        genes.sex_eff[row, g], genes.sex_eff[1 - row, g] = 3.0, -4.0

    for row, (k, tag) in enumerate((("fibrosis", "FIBROSIS"), ("alzheimer", "AD"))):
        g = genes.of_kind(f"disease_{k}")
        genes.symbols[g] = [f"{tag}{i + 1}" for i in range(g.size)]
        genes.disease_marker[g] = k
        genes.base[g] = rng.normal(-1.5, 0.5, g.size)
        genes.disease_eff[row, g] = 2.5

    g = genes.of_kind("background")
    genes.symbols[g] = [f"GENE{i + 1}" for i in range(g.size)]
    genes.base[g] = rng.normal(-0.5, 1.4, g.size)


def _program_loadings_and_trends(
    genes: _Genes, programs: _Programs, age_effect: float, rng: np.random.Generator
) -> None:
    """Per-type baselines of program genes, loadings per program, trends with age.

    Program genes get their own baseline per cell type plus the type's shift along each
    program; the trend of a program gene is the program's shape times the sign of its loading.
    All loadings are then scaled by ``age_effect``.
    """
    is_program_gene = genes.age_program != ""
    n_program_genes = is_program_gene.sum()
    genes.offset[:, is_program_gene] += rng.normal(
        0.0, 0.3, (len(programs.cell_types), n_program_genes)
    )
    np.add.at(genes.program_loadings.T, programs.factor_program, genes.loadings.T)
    shapes = programs.shapes
    for gi in np.flatnonzero(is_program_gene):
        p = int(np.flatnonzero(genes.program_loadings[gi])[0])
        if shapes[p] == "non-monotonic":
            genes.trend[gi] = "non-monotonic"
        else:
            up = (shapes[p] == "increasing") == (genes.program_loadings[gi, p] > 0)
            genes.trend[gi] = "increasing" if up else "decreasing"
    genes.loadings *= age_effect
    genes.program_loadings *= age_effect
    genes.offset += programs.shift @ genes.program_loadings.T


def _shuffle_genes(genes: _Genes, rng: np.random.Generator) -> None:
    """Put the genes in random order (so IDs and positions say nothing about their kind)."""
    perm = rng.permutation(genes.kind.size)
    for name in (
        "kind", "symbols", "age_program", "regulators", "marker_of", "sex_specific",
        "disease_marker", "base", "r_nb", "trend", "loadings", "program_loadings",
    ):  # fmt: skip
        setattr(genes, name, getattr(genes, name)[perm])
    for name in ("offset", "sex_eff", "disease_eff"):  # cell types / sexes / markers x genes
        setattr(genes, name, getattr(genes, name)[:, perm])


def _simulate_genes(p: _Params, programs: _Programs, rng: np.random.Generator) -> _Genes:
    """Draw every gene's parameters, kind by kind, and put the genes in random order.

    Parameters
    ----------
    p
        The validated arguments.
    programs
        Cell types and programs from :func:`_cell_type_programs`.
    rng
        The genes' random stream, right after :func:`_cell_type_programs` drew from it.

    Returns
    -------
    The genes, in their final (random) order.
    """
    genes = _new_genes(p, programs, rng)
    _housekeeping_and_tf_genes(genes, programs, rng)
    _aging_target_genes(genes, programs, rng)
    _marker_and_background_genes(genes, programs, rng)
    _program_loadings_and_trends(genes, programs, p.age_effect, rng)
    _shuffle_genes(genes, rng)
    return genes
