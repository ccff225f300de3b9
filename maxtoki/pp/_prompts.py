"""Cells and timelapses → token ids of temporal prompts (``mt.pp.PromptEncoder``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from .._vocab import GeneVocab

IGNORE_INDEX = -100
TASK_IDS = {"TimeBetweenCells": 0, "NextCell": 1}


class PromptEncoder:
    """Write temporal prompts in the official MaxToki layout, as token ids.

    The context is ``<bos> cell1 <eos> Δt1 <bos> cell2 <eos> [Δt2 <bos> cell3 <eos>]``, where
    ``Δt_j`` is the time token of the timelapse from context cell ``j`` to ``j + 1`` (negative
    when the cells are not in time order). Then

    - TimeBetweenCells: ``<boq> <bos> query <eos> <eoq>``; the answer, the timelapse from the
      last context cell to the query, is read at ``<eoq>`` (it is not a token of the prompt);
    - NextCell: ``<boq> Δt <eoq>``, followed in training by the answer ``<bos> query <eos>``,
      which carries the labels.

    Used by the trainer's datasets, by the :mod:`maxtoki.tl` tools and by hand.

    Parameters
    ----------
    vocab
        A vocabulary with time tokens, ``<boq>`` and ``<eoq>``.
    max_length
        Most tokens of a prompt (answer included); a longer prompt loses the lowest-ranked genes
        of its first context cell (as the official assembler does) or, with
        ``truncate=False``, raises a ``ValueError``. ``None``: no limit.
    max_genes
        Keep each cell's ``max_genes`` top-ranked genes (``None``: all).
    truncate
        Cut the first context cell of an over-long prompt.
    """

    def __init__(
        self,
        vocab: GeneVocab,
        *,
        max_length: int | None = None,
        max_genes: int | None = None,
        truncate: bool = True,
    ) -> None:
        if not getattr(vocab, "has_time_tokens", False):
            raise ValueError(
                "temporal prompts need a vocabulary with time tokens, <boq> and <eoq>; use a "
                "temporal vocabulary (`vocab.with_time_tokens()` or `GeneVocab.official("
                "temporal=True)`)"
            )
        for name, value, low in (("max_length", max_length, 3), ("max_genes", max_genes, 1)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
            ):
                raise ValueError(f"{name} must be an integer >= {low} or None, got {value!r}")
        self.vocab = vocab
        self.max_length = None if max_length is None else int(max_length)
        self.max_genes = None if max_genes is None else int(max_genes)
        self.truncate = bool(truncate)
        self.bos, self.eos = vocab.bos_id, vocab.eos_id
        self.boq, self.eoq = vocab.boq_id, vocab.eoq_id
        self._time_lo, self._time_hi = vocab.time_range
        self._time_start = vocab.time_token_start_id

    def cell(self, tokens: np.ndarray, what: Any = "a cell") -> np.ndarray:
        """``<bos> genes… <eos>`` of a cell as int64, checked and cut to ``max_genes``."""
        cell = np.asarray(tokens, dtype=np.int64)
        if len(cell) < 2 or cell[0] != self.bos or cell[-1] != self.eos:
            raise ValueError(
                f"{what} is not `<bos> genes… <eos>` (starts {cell[:3]}, ends {cell[-2:]}); pass "
                "tokens from `mt.pp.tokenize` or `mt.pp.TokenStore`"
            )
        if self.max_genes is not None and len(cell) - 2 > self.max_genes:
            cell = np.concatenate([cell[: self.max_genes + 1], cell[-1:]])
        return cell

    def time_token(self, months: Any) -> int:
        """The time token of a whole number of months within the vocabulary's range."""
        value = float(months)
        if not (self._time_lo <= value <= self._time_hi) or value != round(value):
            raise ValueError(
                f"a timelapse of {months} months is not a whole number within the time tokens "
                f"[{self._time_lo}, {self._time_hi}]; ages must be in months (not days or years)"
            )
        return self._time_start + int(value) - self._time_lo

    def encode(
        self,
        context: Sequence[np.ndarray],
        dts: Sequence[Any],
        *,
        task: Literal["TimeBetweenCells", "NextCell"],
        query: np.ndarray | None = None,
        dt_query: Any = None,
    ) -> dict[str, Any]:
        """One prompt: its ids, labels, task, ``<eoq>`` position and timelapse target.

        Parameters
        ----------
        context
            The context cells' tokens (``<bos> genes… <eos>`` each).
        dts
            Months from each context cell to the next (one fewer than the cells).
        task
            ``"TimeBetweenCells"`` (needs ``query``) or ``"NextCell"`` (needs ``dt_query``).
        query
            The query cell: read by TimeBetweenCells, the answer of NextCell (teacher-forced,
            with labels; ``None`` for generation).
        dt_query
            Months from the last context cell to the query: the NextCell question, and the
            TimeBetweenCells regression target (``None`` when unknown).

        Returns
        -------
        A dict with ``input_ids`` (int64), ``labels`` (``-100`` except the NextCell answer),
        ``task`` (0 TimeBetweenCells, 1 NextCell), ``eoq_pos`` and ``time_target`` (months; NaN
        unless TimeBetweenCells with a known ``dt_query``).
        """
        if task not in TASK_IDS:
            raise ValueError(f"task must be one of {tuple(TASK_IDS)}, got {task!r}")
        if len(context) < 1 or len(dts) != len(context) - 1:
            raise ValueError(
                f"a prompt needs at least one context cell and one timelapse between each pair; "
                f"got {len(context)} cells and {len(dts)} timelapses"
            )
        cells = [self.cell(c, f"context cell {j}") for j, c in enumerate(context)]
        if task == "TimeBetweenCells":
            if query is None:
                raise ValueError("a TimeBetweenCells prompt needs the query cell")
            tail = [np.array([self.boq]), self.cell(query, "the query cell"), np.array([self.eoq])]
            answer = np.zeros(0, dtype=np.int64)
        else:
            if dt_query is None:
                raise ValueError("a NextCell prompt needs `dt_query`, the timelapse to generate at")
            tail = [np.array([self.boq, self.time_token(dt_query), self.eoq])]
            answer = np.zeros(0, np.int64) if query is None else self.cell(query, "the answer")
        cells = self._fit(cells, sum(len(t) for t in tail) + len(answer))
        parts: list[np.ndarray] = [cells[0]]
        for dt, cell in zip(dts, cells[1:], strict=True):
            parts += [np.array([self.time_token(dt)]), cell]
        prompt = np.concatenate(parts + tail).astype(np.int64)
        input_ids = np.concatenate([prompt, answer])
        labels = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int64)
        labels[len(prompt) :] = answer
        target = float(dt_query) if task == "TimeBetweenCells" and dt_query is not None else np.nan
        return {
            "input_ids": input_ids,
            "labels": labels,
            "task": TASK_IDS[task],
            "eoq_pos": len(prompt) - 1,
            "time_target": target,
        }

    def _fit(self, cells: list[np.ndarray], tail_len: int) -> list[np.ndarray]:
        """Cut the first context cell's lowest-ranked genes until the prompt fits."""
        total = sum(len(c) for c in cells) + len(cells) - 1 + tail_len
        if self.max_length is None or total <= self.max_length:
            return cells
        genes_left = len(cells[0]) - 2 - (total - self.max_length)
        if not self.truncate or genes_left < 1:
            why = (
                "truncation is off"
                if not self.truncate
                else f"with its first context cell cut to one gene it still needs "
                f"{total - len(cells[0]) + 3}"
            )
            raise ValueError(
                f"a prompt needs {total} tokens but max_length is {self.max_length} ({why}); "
                "lower `max_genes`, raise `max_length` or use `truncate=True`"
            )
        first = cells[0]
        return [np.concatenate([first[: genes_left + 1], first[-1:]]), *cells[1:]]
