"""The MaxToki vocabulary (shared by pp, models and train): tokens, gene medians, time tokens."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np

SPECIAL_TOKENS = ("<pad>", "<mask>", "<bos>", "<eos>")
QUESTION_TOKENS = ("<boq>", "<eoq>")
TOKEN_DICTIONARY_FILE = "token_dictionary.json"
GENE_MEDIANS_FILE = "gene_median_dictionary.json"
_INT_RE = re.compile(r"^-?\d+$")
# the official v1 files, shipped gzipped in maxtoki/_data (see the README there)
_OFFICIAL_TOKENS = "token_dictionary_v1.json.gz"
_OFFICIAL_MEDIANS = "gene_median_dictionary_v1.json.gz"
_OFFICIAL_TIME_RANGE = (-1500, 1499)


@dataclass(frozen=True, eq=False)
class GeneVocab:
    """The MaxToki vocabulary: special tokens, gene tokens, time tokens, and gene medians.

    The layout follows the official release: ``<pad>``=0, ``<mask>``=1, ``<bos>``=2, ``<eos>``=3,
    then one token per Ensembl gene ID; a temporal vocabulary appends integer month tokens
    (``"-1500"`` … ``"1499"``) and ``<boq>``, ``<eoq>``.

    Build one with :meth:`official` (the official v1 vocabulary, shipped with the package),
    :meth:`from_files` (JSON dictionaries, e.g. from a checkpoint), :meth:`from_genes`
    (a new model's genes and medians, e.g. from :func:`maxtoki.pp.gene_medians`) or
    :meth:`load` (a folder written by :meth:`save`).

    Parameters
    ----------
    tokens
        Token strings in id order.
    gene_medians
        Non-zero median of normalised expression per gene ID (the rank-value-encoding divisor).
    """

    tokens: tuple[str, ...]
    gene_medians: Mapping[str, float] = field(repr=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a MaxToki vocabulary starts with {SPECIAL_TOKENS} at ids 0–3, "
                f"got {tuple(self.tokens[:4])}"
            )
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("the vocabulary has duplicated tokens; every token needs one id")
        if not len(self.gene_ids):
            raise ValueError(
                "the vocabulary has no genes; pass gene IDs with their medians (e.g. "
                "`GeneVocab.from_genes(mt.pp.gene_medians(adata))`)"
            )
        missing = [g for g in self.gene_ids if g not in self.gene_medians]
        if missing:
            raise ValueError(
                f"{len(missing)} vocabulary genes have no median (e.g. {missing[:3]}); pass "
                "medians for every gene (see `mt.pp.gene_medians`)"
            )
        bad = [
            g
            for g in self.gene_ids
            if not np.isfinite(self.gene_medians[g]) or self.gene_medians[g] <= 0
        ]
        if bad:
            raise ValueError(
                f"gene medians must be finite and > 0; bad for {bad[:3]}: recompute them with "
                "`mt.pp.gene_medians` (genes never detected have no median and must be left out)"
            )
        times = [i for i, t in enumerate(self.tokens) if _INT_RE.match(t)]
        if times:
            months = np.array([int(self.tokens[i]) for i in times])
            if np.any(np.diff(times) != 1) or np.any(np.diff(months) != 1):
                raise ValueError("time tokens must be consecutive months at consecutive ids")
            if "<boq>" not in self.tokens or "<eoq>" not in self.tokens:
                raise ValueError("a temporal vocabulary needs the <boq> and <eoq> tokens")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def official(cls, *, temporal: bool = False) -> GeneVocab:
        """The official MaxToki v1 vocabulary and gene medians, shipped with the package.

        Identical, token for token, id for id and median for median, to
        ``GeneVocab.from_files("token_dictionary_v1.json", "gene_median_dictionary_v1.json")``
        of the official release (resp. ``token_dictionary_temporal_v1.json``): the vocabulary of
        the released checkpoints. Loaded on first use and cached (the same object is returned
        every time: treat it as read-only).

        Parameters
        ----------
        temporal
            ``False``: the stage-1 vocabulary, 20,275 tokens (``<pad>``=0, ``<mask>``=1,
            ``<bos>``=2, ``<eos>``=3, 20,271 Ensembl genes at 4–20,274). ``True``: the temporal
            (stage-2) vocabulary, 23,277 tokens: the same plus the released time tokens
            ``"-1500"`` … ``"1499"`` months at 20,275…23,274 (id = 21,775 + months), ``<boq>``
            23,275 and ``<eoq>`` 23,276. Both share :attr:`encoding_hash`, so tokens made with
            either serve models of both.

        Examples
        --------
        >>> vocab = mt.pp.GeneVocab.official()
        >>> mt.pp.tokenize(adata, vocab=vocab)
        """
        return _official(bool(temporal))

    @classmethod
    def from_files(
        cls, token_dictionary: str | os.PathLike, gene_medians: str | os.PathLike
    ) -> GeneVocab:
        """Load a JSON token dictionary (``{token: id}``) and gene median dictionary.

        Parameters
        ----------
        token_dictionary
            E.g. ``token_dictionary_v1.json`` or ``token_dictionary_temporal_v1.json`` (the
            official files are built in: :meth:`official`). A JSON *list* of tokens is read by
            position (token ``k`` gets id ``k``) with a warning; it must start with ``<pad>``,
            ``<mask>``, ``<bos>``, ``<eos>``.
        gene_medians
            E.g. ``gene_median_dictionary_v1.json``; medians of genes outside the vocabulary
            are ignored.
        """
        return cls._from_json(
            _read_json(token_dictionary, "token dictionary"),
            _read_json(gene_medians, "gene median dictionary"),
            str(token_dictionary),
            str(gene_medians),
        )

    @classmethod
    def _from_json(cls, mapping, medians, token_source: str, median_source: str) -> GeneVocab:
        """Build from parsed JSON: a ``{token: id}`` map (or a token list) and a median map."""
        if isinstance(mapping, list):
            mapping = _list_to_mapping(mapping, token_source)
        if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
            raise ValueError(f"{token_source} must be a JSON object of token → integer id")
        ids = sorted(mapping.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"{token_source}: token ids must be exactly 0 … {len(ids) - 1}")
        tokens = [""] * len(ids)
        for token, i in mapping.items():
            tokens[i] = token
        if not isinstance(medians, dict):
            raise ValueError(f"{median_source} must be a JSON object of gene ID → median")
        genes = {t for t in tokens if not _is_non_gene(t)}
        return cls(tuple(tokens), {g: float(medians[g]) for g in genes if g in medians})

    @classmethod
    def from_genes(
        cls,
        gene_medians: Mapping[str, float],
        *,
        time_range: tuple[int, int] | None = (-1500, 1499),
    ) -> GeneVocab:
        """Build a new vocabulary in the official layout from gene IDs and their medians.

        Parameters
        ----------
        gene_medians
            Gene ID → non-zero median, in the order the gene tokens should take (ids 4, 5, …).
            A :class:`pandas.Series` from :func:`maxtoki.pp.gene_medians` works.
        time_range
            Inclusive month range of the time tokens, or ``None`` for a gene-only (stage 1)
            vocabulary.
        """
        if not hasattr(gene_medians, "keys"):
            raise TypeError(
                "gene_medians must be a mapping of gene ID → median (a dict or the Series of "
                f"`mt.pp.gene_medians`), got {type(gene_medians).__name__}"
            )
        genes = [str(g) for g in dict(gene_medians)]
        vocab = cls((*SPECIAL_TOKENS, *genes), {g: float(gene_medians[g]) for g in genes})
        return vocab if time_range is None else vocab.with_time_tokens(time_range)

    def with_time_tokens(self, time_range: tuple[int, int] = (-1500, 1499)) -> GeneVocab:
        """Return this vocabulary plus time tokens in ``time_range``, ``<boq>`` and ``<eoq>``."""
        if self.has_time_tokens:
            raise ValueError("this vocabulary already has time tokens")
        lo, hi = (int(v) for v in time_range)
        if hi <= lo:
            raise ValueError(f"time_range must be (min, max) with max > min, got {time_range}")
        times = tuple(str(m) for m in range(lo, hi + 1))
        return GeneVocab((*self.tokens, *times, *QUESTION_TOKENS), self.gene_medians)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``token_dictionary.json`` and ``gene_median_dictionary.json`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(directory / TOKEN_DICTIONARY_FILE, self.token_to_id)
        _write_json_atomic(
            directory / GENE_MEDIANS_FILE, {g: self.gene_medians[g] for g in self.gene_ids}
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GeneVocab:
        """Read a vocabulary written by :meth:`save` (e.g. inside a model folder)."""
        directory = Path(directory)
        return cls.from_files(directory / TOKEN_DICTIONARY_FILE, directory / GENE_MEDIANS_FILE)

    # --- ids ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def token_to_id(self) -> dict[str, int]:
        """Token string → id."""
        return {t: i for i, t in enumerate(self.tokens)}

    pad_id: ClassVar[int] = 0
    mask_id: ClassVar[int] = 1
    bos_id: ClassVar[int] = 2
    eos_id: ClassVar[int] = 3

    @property
    def boq_id(self) -> int | None:
        """Id of ``<boq>`` (``None`` without time tokens)."""
        return self.token_to_id.get("<boq>")

    @property
    def eoq_id(self) -> int | None:
        """Id of ``<eoq>`` (``None`` without time tokens)."""
        return self.token_to_id.get("<eoq>")

    @cached_property
    def gene_token_ids(self) -> np.ndarray:
        """Ids of the gene tokens (ascending)."""
        return np.array(
            [i for i, t in enumerate(self.tokens) if not _is_non_gene(t)], dtype=np.int64
        )

    @cached_property
    def is_gene_token(self) -> np.ndarray:
        """Which token ids are gene tokens: a read-only boolean mask of length ``len(self)``."""
        mask = np.zeros(len(self), dtype=bool)
        mask[self.gene_token_ids] = True
        mask.flags.writeable = False
        return mask

    @cached_property
    def gene_ids(self) -> np.ndarray:
        """Gene IDs in token order."""
        return np.array([self.tokens[i] for i in self.gene_token_ids], dtype=object)

    @property
    def n_genes(self) -> int:
        """Number of gene tokens."""
        return len(self.gene_token_ids)

    @cached_property
    def _time_ids(self) -> np.ndarray:
        return np.array([i for i, t in enumerate(self.tokens) if _INT_RE.match(t)], dtype=np.int64)

    @property
    def has_time_tokens(self) -> bool:
        """Whether this is a temporal vocabulary."""
        return len(self._time_ids) > 0

    @property
    def time_token_start_id(self) -> int | None:
        """Id of the smallest time token (``None`` without time tokens)."""
        return int(self._time_ids[0]) if self.has_time_tokens else None

    @property
    def n_time_tokens(self) -> int:
        """Number of time tokens."""
        return len(self._time_ids)

    @property
    def time_range(self) -> tuple[int, int] | None:
        """Inclusive (min, max) months of the time tokens."""
        if not self.has_time_tokens:
            return None
        return int(self.tokens[self._time_ids[0]]), int(self.tokens[self._time_ids[-1]])

    def time_token_id(self, months: int | Iterable[int] | np.ndarray) -> np.ndarray | int:
        """Token id(s) of integer month value(s); raises if outside :attr:`time_range`."""
        if not self.has_time_tokens:
            raise ValueError(
                "this vocabulary has no time tokens; use a temporal vocabulary "
                "(`vocab.with_time_tokens()` or token_dictionary_temporal_v1.json)"
            )
        lo, hi = self.time_range
        arr = np.asarray(months)
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError("time token values must be whole months")
            arr = arr.astype(np.int64)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise ValueError(f"months must lie in the time-token range [{lo}, {hi}]")
        ids = arr.astype(np.int64) - lo + self.time_token_start_id
        return int(ids) if ids.ndim == 0 else ids

    @cached_property
    def median_per_token(self) -> np.ndarray:
        """Gene median at each token id (``nan`` for non-gene tokens), float64."""
        out = np.full(len(self), np.nan)
        out[self.gene_token_ids] = [self.gene_medians[g] for g in self.gene_ids]
        return out

    @cached_property
    def hash(self) -> str:
        """Content hash (tokens and medians) recorded wherever tokens are written."""
        h = hashlib.sha256("\n".join(self.tokens).encode())
        h.update(np.round(self.median_per_token[self.gene_token_ids], 10).tobytes())
        return h.hexdigest()[:16]

    @cached_property
    def encoding_hash(self) -> str:
        """Hash of what rank value encoding depends on: gene IDs, their token ids and medians.

        A stage-1 vocabulary and its temporal extension (:meth:`with_time_tokens`, or the
        official ``token_dictionary_temporal_v1.json``) share it, so tokens made with either
        serve models of both.
        """
        pairs = zip(self.gene_token_ids.tolist(), self.gene_ids, strict=True)
        h = hashlib.sha256("\n".join(f"{i}:{g}" for i, g in pairs).encode())
        h.update(np.round(self.median_per_token[self.gene_token_ids], 10).tobytes())
        return h.hexdigest()[:16]

    def model_config_fields(self) -> dict[str, int | None]:
        """The :class:`~maxtoki.models.MaxTokiConfig` fields that this vocabulary determines.

        A vocabulary without time tokens sets ``time_token_start_id``, ``boq_token_id`` and
        ``eoq_token_id`` to ``None`` and leaves ``n_time_tokens`` and ``time_min_months`` out
        (they mean nothing then; the config keeps its defaults).
        """
        fields = {
            "vocab_size": len(self),
            "pad_token_id": self.pad_id,
            "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_id,
            "time_token_start_id": self.time_token_start_id,
            "boq_token_id": self.boq_id,
            "eoq_token_id": self.eoq_id,
        }
        if self.has_time_tokens:
            fields.update(n_time_tokens=self.n_time_tokens, time_min_months=self.time_range[0])
        return fields

    def __repr__(self) -> str:
        time = f", time tokens {self.time_range}" if self.has_time_tokens else ""
        return f"GeneVocab({len(self)} tokens, {self.n_genes} genes{time}, hash={self.hash})"


def _is_non_gene(token: str) -> bool:
    return token in SPECIAL_TOKENS or token in QUESTION_TOKENS or bool(_INT_RE.match(token))


def _list_to_mapping(tokens: list, source: str) -> dict[str, int]:
    """A token dictionary stored as a list (read by position): check it, warn, map it."""
    if not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{source}: a token list must hold token strings only")
    head = tuple(tokens[: len(SPECIAL_TOKENS)])
    if head != SPECIAL_TOKENS:
        missing = [t for t in SPECIAL_TOKENS if t not in tokens]
        raise ValueError(
            f"{source} is a JSON list of tokens, not a {{token: id}} map, and it starts with "
            f"{head} instead of {SPECIAL_TOKENS}"
            + (f" (it lacks {missing})" if missing else "")
            + ". Reading it by position would give every gene the wrong id: with one special "
            "token missing, each gene lands one id below the id the model was trained with "
            "(a one-off shift), and the model reads every cell as other genes. Such lists are "
            "found inside some official checkpoints. Fix: use the {token: id} dictionary of the "
            "release (`GeneVocab.official()`, or `token_dictionary_v1.json` / "
            "`token_dictionary_temporal_v1.json` with `GeneVocab.from_files`), or convert the "
            "list to a {token: id} map with the ids the model was trained with."
        )
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{source}: the token list has duplicated tokens")
    warnings.warn(
        f"{source} is a JSON list of tokens, not a {{token: id}} map: ids were assigned by "
        "position (token k → id k). This is only right if the list holds every token the model "
        f"was trained with, specials {SPECIAL_TOKENS} included, in id order; a list that lacks "
        "a special token shifts every gene id. Prefer the {token: id} dictionary "
        "(`GeneVocab.official()` for the released checkpoints).",
        UserWarning,
        stacklevel=4,
    )
    return {t: i for i, t in enumerate(tokens)}


@cache
def _official(temporal: bool) -> GeneVocab:
    if temporal:
        return _official(False).with_time_tokens(_OFFICIAL_TIME_RANGE)
    return GeneVocab._from_json(
        _read_package_json(_OFFICIAL_TOKENS),
        _read_package_json(_OFFICIAL_MEDIANS),
        f"maxtoki/_data/{_OFFICIAL_TOKENS}",
        f"maxtoki/_data/{_OFFICIAL_MEDIANS}",
    )


def _read_package_json(name: str):
    """A gzipped JSON file of ``maxtoki/_data`` (works from a wheel, a zip or a checkout)."""
    with (resources.files("maxtoki") / "_data" / name).open("rb") as f:
        return json.loads(gzip.decompress(f.read()))


def _read_json(path: str | os.PathLike, what: str):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {e}") from None


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
