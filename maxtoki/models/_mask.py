"""Which keys each query may attend to: causal, padding, packed documents, KV-cache offset."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttentionMask:
    """A description of the attention pattern, turned into what each backend needs.

    Query ``t`` sits at key slot ``q_offset + t`` (``q_offset`` is the KV-cache length) and sees
    key ``s`` when ``s <= q_offset + t``, key ``s`` is not padding and both belong to the same
    document. A query always sees itself, so padded queries never have an empty softmax row.

    Parameters
    ----------
    q_len, k_len
        Number of queries and keys.
    q_offset
        Key slot of the first query.
    key_valid
        ``(B, k_len)`` bool, ``False`` at padding; ``None`` when every key is real.
    query_valid
        ``(B, q_len)`` bool, ``False`` at padding; ``None`` when every query is real.
    seq_ids
        ``(B, q_len)`` document ids of packed prompts (only without a cache); ``None`` for one
        document per row.
    """

    q_len: int
    k_len: int
    q_offset: int = 0
    key_valid: torch.Tensor | None = None
    query_valid: torch.Tensor | None = None
    seq_ids: torch.Tensor | None = None
    _dense: torch.Tensor | None = field(default=None, repr=False)
    _varlen: tuple | None = field(default=None, repr=False)

    @property
    def is_causal_only(self) -> bool:
        """No padding and no documents: a plain (bottom-right aligned) causal mask."""
        return self.key_valid is None and self.seq_ids is None

    def dense(self, device: torch.device) -> torch.Tensor:
        """``(B or 1, 1, q_len, k_len)`` bool, ``True`` where attention is allowed."""
        if self._dense is None:
            q_pos = torch.arange(self.q_len, device=device) + self.q_offset
            k_pos = torch.arange(self.k_len, device=device)
            allowed = (k_pos[None, :] <= q_pos[:, None])[None]
            if self.key_valid is not None:
                allowed = allowed & self.key_valid[:, None, :]
            if self.seq_ids is not None:
                allowed = allowed & (self.seq_ids[:, :, None] == self.seq_ids[:, None, :])
            allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]
            self._dense = allowed[:, None]
        return self._dense

    def varlen(self, device: torch.device) -> tuple:
        """Unpadding for flash-attn varlen.

        Returns ``(q_index, k_index, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)``
        where the indices are ``(B, T)``/``(B, S)`` bool masks of the tokens kept. Every segment
        (a row, or a document of a row) has its queries as its last keys, so flash-attn's
        bottom-right causal alignment is right.
        """
        if self._varlen is None:
            batch = (self.key_valid if self.key_valid is not None else self.seq_ids).shape[0]
            q_keep = self.query_valid
            if q_keep is None:
                q_keep = torch.ones(batch, self.q_len, dtype=torch.bool, device=device)
            k_keep = self.key_valid
            if k_keep is None:
                k_keep = torch.ones(batch, self.k_len, dtype=torch.bool, device=device)
            if self.seq_ids is not None:  # packed documents: no cache, queries == keys
                rows = torch.arange(batch, device=device)[:, None].expand_as(self.seq_ids)[q_keep]
                docs = self.seq_ids[q_keep]
                change = (rows[1:] != rows[:-1]) | (docs[1:] != docs[:-1])
                starts = torch.cat(
                    [torch.zeros(1, dtype=torch.long, device=device), change.nonzero()[:, 0] + 1]
                )
                cu = torch.cat([starts, torch.tensor([docs.numel()], device=device)]).to(
                    torch.int32
                )
                max_len = int((cu[1:] - cu[:-1]).max())
                self._varlen = (q_keep, k_keep, cu, cu, max_len, max_len)
            else:
                n_q, n_k = q_keep.sum(1), k_keep.sum(1)
                cu_q = torch.nn.functional.pad(n_q.cumsum(0), (1, 0)).to(torch.int32)
                cu_k = torch.nn.functional.pad(n_k.cumsum(0), (1, 0)).to(torch.int32)
                self._varlen = (q_keep, k_keep, cu_q, cu_k, int(n_q.max()), int(n_k.max()))
        return self._varlen
