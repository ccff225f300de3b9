"""Examples → a batch of tensors: right-padded rows, or several prompts packed into one row."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._prompts import IGNORE_INDEX


class Collator:
    """Turn examples of :class:`PromptDataset` / :class:`CellDataset` into a batch.

    Parameters
    ----------
    pad_id
        Token id of padding (``<pad>`` = 0).
    pack
        Pack several examples into each row (first fit, rows of ``max_length``) with document ids
        in ``seq_ids`` and position ids restarting at 0 for each example, for attention
        backends that honour document masks (flash-attn varlen, or a dense mask).
    max_length
        Row length when packing (required then).
    pad_to_multiple_of
        Round the row length up to a multiple of this (e.g. 8 for tensor cores).

    Returns
    -------
    A callable; its batch holds ``input_ids``, ``labels`` (``-100`` where there is no target),
    ``attention_mask`` (bool, ``False`` at padding), ``position_ids``, ``seq_ids`` (only when
    packing; ``-1`` at padding), one entry per example in ``eoq_index`` (``(N, 2)`` row and
    column of ``<eoq>``, ``-1`` in stage 1), ``time_target`` (``(N,)`` months, NaN unless
    TimeBetweenCells) and ``task`` (``(N,)``), and ``n_tokens`` (non-padding tokens).
    """

    def __init__(
        self,
        *,
        pad_id: int = 0,
        pack: bool = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        if pack and max_length is None:
            raise ValueError("packing needs `max_length` (the row length)")
        self.pad_id = int(pad_id)
        self.pack = bool(pack)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def _rows(self, lengths: list[int]) -> list[list[int]]:
        if not self.pack:
            return [[i] for i in range(len(lengths))]
        rows: list[list[int]] = []
        free: list[int] = []
        for i, n in enumerate(lengths):
            if n > self.max_length:
                raise ValueError(
                    f"an example of {n} tokens does not fit a row of max_length={self.max_length}"
                )
            for r, space in enumerate(free):
                if n <= space:
                    rows[r].append(i)
                    free[r] -= n
                    break
            else:
                rows.append([i])
                free.append(self.max_length - n)
        return rows

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(e["input_ids"]) for e in examples]
        rows = self._rows(lengths)
        width = max(sum(lengths[i] for i in row) for row in rows)
        if self.pad_to_multiple_of:
            m = int(self.pad_to_multiple_of)
            width = -(-width // m) * m
        b = len(rows)
        input_ids = np.full((b, width), self.pad_id, dtype=np.int64)
        labels = np.full((b, width), IGNORE_INDEX, dtype=np.int64)
        position_ids = np.zeros((b, width), dtype=np.int64)
        seq_ids = np.full((b, width), -1, dtype=np.int64)
        eoq_index = np.full((len(examples), 2), -1, dtype=np.int64)
        for r, row in enumerate(rows):
            col = 0
            for doc, i in enumerate(row):
                e, n = examples[i], lengths[i]
                input_ids[r, col : col + n] = e["input_ids"]
                labels[r, col : col + n] = e["labels"]
                position_ids[r, col : col + n] = np.arange(n)
                seq_ids[r, col : col + n] = doc
                if e["eoq_pos"] >= 0:
                    eoq_index[i] = (r, col + e["eoq_pos"])
                col += n
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(seq_ids >= 0),
            "position_ids": torch.from_numpy(position_ids),
            "eoq_index": torch.from_numpy(eoq_index),
            "time_target": torch.tensor([e["time_target"] for e in examples], dtype=torch.float32),
            "task": torch.tensor([e["task"] for e in examples], dtype=torch.long),
            "n_tokens": int(sum(lengths)),
        }
        if self.pack:
            batch["seq_ids"] = torch.from_numpy(seq_ids)
        return batch
