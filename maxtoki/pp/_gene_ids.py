"""Gene IDs: find the Ensembl IDs of an AnnData's genes, and map gene symbols to them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import logging as logg
from .._anndata import resolve_modality
from .._docs import inject_docs

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab

ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")
_SYMBOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._\-/@]*$")
DEFAULT_GENE_ID_KEY = "ensembl_id"
_SYMBOL_HINT = "pass gene_id_key= or run mt.pp.map_gene_ids first"


@inject_docs
def map_gene_ids(
    adata: Any,
    mapping: Mapping[str, str] | pd.Series | pd.DataFrame,
    *,
    from_key: str | None = None,
    key_added: str = DEFAULT_GENE_ID_KEY,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | None:
    """Map gene symbols (or any other gene names) to Ensembl IDs with a user-given table.

    :func:`maxtoki.pp.tokenize` needs Ensembl gene IDs (the vocabulary's tokens). If your genes are
    named by symbols, give a symbol → Ensembl ID table (e.g. from Ensembl BioMart or GENCODE):
    the match is exact first, then case-insensitive. Genes the table does not know keep their
    original name, so they match no vocabulary gene and are ignored by
    :func:`~maxtoki.pp.tokenize` (whose log reports the overlap).

    Parameters
    ----------
    adata
        AnnData (or MuData, see ``mod``) whose genes to map.
    mapping
        Name → Ensembl ID: a dict, a :class:`pandas.Series` (index: names), or a two-column
        :class:`pandas.DataFrame` (first column names, second column IDs). A name listed with
        several IDs takes the first.
    from_key
        Column of ``var`` holding the names; ``None`` uses ``var_names``.
    key_added
        Column of ``var`` to write the IDs to.
    {mod}
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or a copy when ``copy=True``, with

    ``var[key_added]``
        Ensembl ID of each gene (version suffixes removed), or its original name when unmapped.
    """
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty var column name, got {key_added!r}")
    start = logg.info("mapping gene names to Ensembl IDs")
    table = _mapping_to_dict(mapping)
    target, _ = resolve_modality(adata, mod)
    if from_key is None:
        names = target.var_names.astype(str).to_numpy()
    elif from_key in target.var.columns:
        names = target.var[from_key].astype(str).to_numpy()
    else:
        raise ValueError(
            f"var has no column {from_key!r} (columns: {list(target.var.columns)}); pass "
            "from_key=None to map var_names"
        )
    upper = {}
    for k, v in table.items():
        upper.setdefault(k.upper(), v)
    mapped = np.empty(len(names), dtype=object)
    n_mapped = 0
    for i, name in enumerate(names):
        hit = table.get(name)
        if hit is None:
            hit = upper.get(name.upper())
        if hit is None:
            mapped[i] = name
        else:
            mapped[i] = strip_version(hit)
            n_mapped += 1
    if n_mapped == 0:
        raise ValueError(
            f"none of the {len(names):,} gene names (e.g. {list(names[:3])}) are in the mapping "
            f"(e.g. {list(table)[:3]}); check from_key= and the mapping's direction (name → ID)"
        )
    if copy:
        adata = adata.copy()
        target, _ = resolve_modality(adata, mod)
    target.var[key_added] = mapped.astype(str)
    logg.info(
        f"    mapped {n_mapped:,} of {len(names):,} genes ({n_mapped / max(len(names), 1):.1%}); "
        "unmapped genes keep their name and are ignored by mt.pp.tokenize",
        time=start,
    )
    logg.info(f"added var[{key_added!r}]")
    return adata if copy else None


def _mapping_to_dict(mapping: Any) -> dict[str, str]:
    if isinstance(mapping, pd.DataFrame):
        if mapping.shape[1] != 2:
            raise ValueError(
                "a mapping DataFrame needs exactly two columns (names, Ensembl IDs), got "
                f"{list(mapping.columns)}"
            )
        pairs = zip(mapping.iloc[:, 0], mapping.iloc[:, 1], strict=True)
    elif isinstance(mapping, pd.Series):
        pairs = zip(mapping.index, mapping.to_numpy(), strict=True)
    elif isinstance(mapping, Mapping):
        pairs = mapping.items()
    else:
        raise TypeError(
            f"mapping must be a dict, Series or two-column DataFrame, got {type(mapping).__name__}"
        )
    out: dict[str, str] = {}
    for k, v in pairs:
        if _is_missing(k) or _is_missing(v):
            continue
        out.setdefault(str(k), str(v))
    if not out:
        raise ValueError(
            "the mapping is empty (or holds only missing values); pass gene name → Ensembl ID pairs"
        )
    return out


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def strip_version(gene_id: str) -> str:
    """``'ENSG00000141510.17'`` → ``'ENSG00000141510'``; anything else is returned unchanged."""
    if ENSEMBL_RE.match(gene_id) and "." in gene_id:
        return gene_id.split(".", 1)[0]
    return gene_id


def looks_like_ensembl(values: np.ndarray) -> float:
    """Fraction of ``values`` (a sample of at most 2,000) that look like Ensembl gene IDs."""
    sample = _sample(values)
    if len(sample) == 0:
        return 0.0
    return float(np.mean([bool(ENSEMBL_RE.match(v)) for v in sample]))


def _sample(values: np.ndarray, n: int = 2000) -> list[str]:
    values = np.asarray(values)
    if len(values) > n:
        values = values[np.linspace(0, len(values) - 1, n).astype(int)]
    return [str(v) for v in values]


def _symbol_examples(values: np.ndarray) -> list[str]:
    sample = [v for v in _sample(values) if not ENSEMBL_RE.match(v) and _SYMBOL_RE.match(v)]
    # prefer short upper-case names (CD3E, GAPDH) as examples
    sample.sort(key=lambda v: (not v.isupper(), len(v)))
    return sample[:3]


def _looks_like_symbols(values: np.ndarray) -> bool:
    sample = _sample(values)
    if not sample:
        return False
    frac_ens = np.mean([bool(ENSEMBL_RE.match(v)) for v in sample])
    frac_sym = np.mean([bool(_SYMBOL_RE.match(v)) and not ENSEMBL_RE.match(v) for v in sample])
    return bool(frac_ens < 0.5 and frac_sym >= 0.5)


@dataclass(frozen=True)
class GeneIds:
    """Resolved Ensembl IDs of an AnnData's genes (internal)."""

    ids: np.ndarray  # str object array, one per var, versions stripped
    source: str  # "var['ensembl_id']" or "var_names"
    key: str  # column name, or "index" for var_names


def resolve_gene_ids(adata: AnnData, gene_id_key: str | None = None) -> GeneIds:
    """Find the Ensembl IDs of ``adata``'s genes (validation only; writes nothing).

    Order: ``var[gene_id_key]`` when given (``"index"`` means ``var_names``), else
    ``var['ensembl_id']``, else ``var_names`` when they look like Ensembl IDs. Version suffixes
    (``.17``) are removed. Missing IDs, and gene symbols where IDs are expected, raise a
    :class:`ValueError`.
    """
    if gene_id_key is not None and not isinstance(gene_id_key, str):
        raise TypeError(f"gene_id_key must be a var column name, got {type(gene_id_key).__name__}")
    if gene_id_key == "index":
        raw, source, key = adata.var_names.to_numpy(), "var_names", "index"
    elif gene_id_key is not None:
        if gene_id_key not in adata.var.columns:
            raise ValueError(
                f"var has no column {gene_id_key!r} (columns: {list(adata.var.columns)}); "
                "pass gene_id_key= naming the column with Ensembl gene IDs"
            )
        raw, source, key = adata.var[gene_id_key].to_numpy(), f"var[{gene_id_key!r}]", gene_id_key
    elif DEFAULT_GENE_ID_KEY in adata.var.columns:
        raw = adata.var[DEFAULT_GENE_ID_KEY].to_numpy()
        source, key = f"var[{DEFAULT_GENE_ID_KEY!r}]", DEFAULT_GENE_ID_KEY
    else:
        names = adata.var_names.to_numpy()
        if looks_like_ensembl(names) >= 0.5:
            raw, source, key = names, "var_names", "index"
        elif _looks_like_symbols(names):
            ex = _symbol_examples(names)
            raise ValueError(
                f"var has no {DEFAULT_GENE_ID_KEY!r} column and var_names look like gene symbols "
                f"(e.g. {', '.join(repr(e) for e in ex)}); {_SYMBOL_HINT}"
            )
        else:
            raise ValueError(
                f"no Ensembl gene IDs found: var has no {DEFAULT_GENE_ID_KEY!r} column and "
                f"var_names (e.g. {list(map(str, names[:3]))}) are not Ensembl IDs; {_SYMBOL_HINT}"
            )
    missing = np.array([_is_missing(v) for v in raw], dtype=bool)
    if missing.any():
        where = adata.var_names[missing][:3].tolist()
        raise ValueError(
            f"{int(missing.sum()):,} genes have no ID in {source} (e.g. genes {where}); give every "
            "gene an ID (IDs outside the vocabulary are ignored) or subset the AnnData to genes "
            "with IDs"
        )
    ids = np.array([strip_version(str(v)) for v in raw], dtype=object)
    if source != "var_names" or looks_like_ensembl(ids) < 0.5:
        if _looks_like_symbols(ids):
            ex = _symbol_examples(ids)
            raise ValueError(
                f"{source} looks like gene symbols (e.g. {', '.join(repr(e) for e in ex)}), not "
                f"Ensembl IDs; {_SYMBOL_HINT}"
            )
    return GeneIds(ids=ids, source=source, key=key)


def column_tokens(ids: np.ndarray, vocab: GeneVocab) -> np.ndarray:
    """Token id of each gene ID (int32, ``-1`` outside the vocabulary's genes)."""
    lookup = vocab.token_to_id
    gene_set = set(vocab.gene_ids.tolist())
    return np.array([lookup[g] if g in gene_set else -1 for g in ids], dtype=np.int32)
