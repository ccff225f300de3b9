"""A preallocated key/value cache for incremental decoding."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for ``batch_size`` rows and up to ``max_len`` slots.

    Each forward pass writes its tokens at slots ``length .. length + T - 1`` of every row; the
    tensors of a layer are allocated once, at its first write (prefill), with shape
    ``(batch_size, n_kv_heads, max_len, head_dim)`` so that the slots in use are a view that
    SDPA reads without a copy. Rows may hold padding: ``key_valid`` marks the slots that hold
    real tokens.

    Parameters
    ----------
    num_layers
        Number of decoder layers.
    batch_size
        Number of rows (prompts).
    max_len
        Slots per row: prompt length plus the tokens to generate.
    """

    def __init__(self, num_layers: int, batch_size: int, max_len: int) -> None:
        if min(num_layers, batch_size, max_len) < 1:
            raise ValueError(
                "num_layers, batch_size and max_len must be >= 1, "
                f"got {num_layers}, {batch_size}, {max_len}."
            )
        self.num_layers, self.batch_size, self.max_len = num_layers, batch_size, max_len
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.key_valid: torch.Tensor | None = None
        self.n_valid: torch.Tensor | None = None
        self._pending = 0
        self._has_holes = False

    def begin(self, input_ids: torch.Tensor, query_valid: torch.Tensor | None = None) -> int:
        """Reserve slots for the ``T`` new tokens of ``input_ids`` ``(B, T)``; return the first.

        ``query_valid`` ``(B, T)`` bool marks the new tokens that are not padding; ``None`` means
        that all are real. Once a padding mask has been passed, attention reads the mask of
        valid keys (:meth:`valid_keys`); its values are never inspected here, so that a decode
        step runs without a host sync.
        """
        batch, steps = input_ids.shape
        if batch != self.batch_size:
            raise ValueError(f"the cache holds {self.batch_size} rows but the input has {batch}.")
        if self.length + steps > self.max_len:
            raise ValueError(
                f"the KV cache is full: {self.length} + {steps} tokens > max_len={self.max_len}; "
                "allocate a larger cache."
            )
        if self.key_valid is None:
            self.key_valid = torch.zeros(
                batch, self.max_len, dtype=torch.bool, device=input_ids.device
            )
            self.n_valid = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
        slots = slice(self.length, self.length + steps)
        if query_valid is None:
            self.key_valid[:, slots] = True
        else:
            self.key_valid[:, slots] = query_valid
            self._has_holes = True
        self._pending = steps
        return self.length

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``key``/``value`` ``(B, T, H_kv, D)`` of ``layer``; return all slots so far.

        The returned tensors are ``(B, S, H_kv, D)`` views (no copy) of the cache.
        """
        if self.keys[layer] is None:
            shape = (self.batch_size, key.shape[2], self.max_len, key.shape[3])
            self.keys[layer] = key.new_zeros(shape)
            self.values[layer] = value.new_zeros(shape)
        end = self.length + key.shape[1]
        self.keys[layer][:, :, self.length : end] = key.transpose(1, 2)
        self.values[layer][:, :, self.length : end] = value.transpose(1, 2)
        return (
            self.keys[layer][:, :, :end].transpose(1, 2),
            self.values[layer][:, :, :end].transpose(1, 2),
        )

    def end(self) -> None:
        """Commit the slots reserved by :meth:`begin` (called after the last layer)."""
        self.n_valid += self.key_valid[:, self.length : self.length + self._pending].sum(1)
        self.length += self._pending
        self._pending = 0

    def valid_keys(self) -> torch.Tensor | None:
        """``(B, length + pending)`` bool mask of real tokens, or ``None`` when all are real."""
        if not self._has_holes:
            return None
        return self.key_valid[:, : self.length + self._pending]

    def reset(self) -> None:
        """Forget all tokens (keeps the allocated tensors)."""
        self.length, self._pending, self._has_holes = 0, 0, False
        if self.key_valid is not None:
            self.key_valid.zero_()
            self.n_valid.zero_()
