"""Examples → a batch of tensors: right-padded rows, or several prompts packed into one row.

The collator sits beside the model because it is where token ids enter it: the ids are checked
here, on the host and before any tensor is made, so that the forward pass need not check them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100  # label of positions without a target (the cross-entropy default)


class Collator:
    """Turn examples of :class:`PromptDataset` / :class:`CellDataset` into a batch.

    Parameters
    ----------
    pad_id
        Token id of padding (``<pad>`` = 0).
    vocab_size
        Every token id must lie in ``[0, vocab_size)`` (checked per example, on the host; a
        ``ValueError`` names the example). ``None`` checks only that ids are not negative.
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
        vocab_size: int | None = None,
        pack: bool = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        if pack and max_length is None:
            raise ValueError("packing needs `max_length` (the row length)")
        if vocab_size is not None and (
            isinstance(vocab_size, bool) or not isinstance(vocab_size, int | np.integer)
        ):
            raise TypeError(f"vocab_size must be an int or None, got {vocab_size!r}")
        if vocab_size is not None and vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.pad_id = int(pad_id)
        self.vocab_size = None if vocab_size is None else int(vocab_size)
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

    def _check_ids(self, examples: list[dict[str, Any]]) -> None:
        """Raise a ``ValueError`` naming the first example with ids outside the vocabulary."""
        top = self.vocab_size
        valid = f"[0, {top})" if top is not None else "[0, ∞)"
        for i, example in enumerate(examples):
            ids = np.asarray(example["input_ids"])
            if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
                raise ValueError(
                    f"example {i}: input_ids must be a 1-D array of integer token ids, got "
                    f"dtype {ids.dtype} and shape {ids.shape}"
                )
            if ids.size == 0:
                continue
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or (top is not None and hi >= top):
                raise ValueError(
                    f"example {i} has token ids in [{lo}, {hi}], outside the valid range {valid}"
                    + (" (vocab_size)" if top is not None else "")
                    + "; tokenise with the model's vocabulary"
                )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        self._check_ids(examples)
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
