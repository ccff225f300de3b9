"""Many prompts or cells through a model in batches: padding, device, progress, read-outs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import logging as logg
from .._settings import settings

if TYPE_CHECKING:
    from ._decoder import MaxToki

_BLOCK = 1024  # prompts sorted by length inside blocks of this many: less padding
_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}
_HALF = (torch.bfloat16, torch.float16)
_ANNOUNCED: set[tuple] = set()  # (device, dtype, autocast, backend) already stated in the log


def inference_dtype(
    dtype: str | torch.dtype | None,
    device: str | torch.device,
    *,
    weights: torch.dtype = torch.float32,
    bf16_supported: bool = True,
) -> torch.dtype:
    """The dtype inference computes in.

    Parameters
    ----------
    dtype
        ``"auto"`` (or ``None``): bfloat16 on CUDA when the weights are float32 (float16 where
        the GPU has no bfloat16), else the weights' own dtype (float32 on the CPU for a float32
        model). A :class:`torch.dtype` or its name (``"bfloat16"``, ``"float16"``,
        ``"float32"``, ``"float64"``; ``"bf16"``, ``"fp16"``, ``"fp32"``) is used as given.
    device
        Where the model runs (only its type matters).
    weights
        The dtype of the model's weights.
    bf16_supported
        Whether the GPU computes in bfloat16 (``torch.cuda.is_bf16_supported()``).
    """
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        if torch.device(device).type == "cuda" and weights == torch.float32:
            return torch.bfloat16 if bf16_supported else torch.float16
        return weights
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(
        f"dtype must be 'auto', a floating-point torch.dtype or one of 'bfloat16', 'float16', "
        f"'float32', 'float64', got {dtype!r}"
    )


class BatchRunner:
    """Run a :class:`MaxToki` over lists of token arrays, in batches, and read the results out.

    The inference layer below :mod:`maxtoki.tl`: it takes NumPy token arrays (cells
    ``<bos> genes… <eos>`` or prompts from :class:`maxtoki.pp.PromptEncoder`), never AnnData.
    Inputs are checked on the host once (ids within the vocabulary), batched by similar length,
    right-padded (no attention mask at all when a batch has no padding) and run under
    :func:`torch.inference_mode` with a progress bar (``mt.settings.progress``).

    Parameters
    ----------
    model
        The model; moved to ``device`` and put in eval mode.
    batch_size
        Sequences per forward pass; ``None`` uses ``mt.settings.batch_size``.
    device
        Torch device; ``None`` uses ``mt.settings.device`` (``'auto'``: CUDA when available).
    dtype
        Precision (see :func:`inference_dtype`); ``None`` uses ``mt.settings.dtype``
        (``'auto'``: bfloat16 autocast on CUDA, the weights' dtype on the CPU). A half
        precision over float32 weights runs under :func:`torch.autocast` (the weights stay
        float32; flash-attn can engage); any other dtype than the weights' casts the model, as
        ``device`` moves it. The runner's ``device``, ``dtype`` and ``autocast`` (bool)
        attributes say what was chosen; the first batch logs it with the attention backend.
    """

    def __init__(
        self,
        model: MaxToki,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        size = settings.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        self.model = model
        self.batch_size = int(size)
        self.device = torch.device(settings.resolve_device(device))
        weights = model.dtype
        bf16 = self.device.type != "cuda" or torch.cuda.is_bf16_supported()
        self.dtype = inference_dtype(
            settings.dtype if dtype is None else dtype,
            self.device,
            weights=weights,
            bf16_supported=bf16,
        )
        self.autocast = self.dtype in _HALF and weights == torch.float32
        model.to(self.device)
        if not self.autocast and self.dtype != weights:
            model.to(dtype=self.dtype)
            logg.info(f"cast the model's weights from {weights} to {self.dtype} for inference")
        model.eval()

    @property
    def dtype_name(self) -> str:
        """:attr:`dtype` as a short name (``'bfloat16'``), for the ``params`` of a tool."""
        return str(self.dtype).removeprefix("torch.")

    def _precision(self, need_weights: bool = False):
        """The autocast context of the forward passes; states device, dtype and backend once."""
        backend = self.model._attn_backend(self.device, self.dtype, need_weights)
        key = (str(self.device), self.dtype, self.autocast, backend)
        if key not in _ANNOUNCED:
            _ANNOUNCED.add(key)
            how = f"{self.dtype_name} autocast (float32 weights)" if self.autocast else None
            logg.info(
                f"maxtoki inference on {self.device} in {how or self.dtype_name}, "
                f"attention: {backend}"
            )
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # --- read-outs --------------------------------------------------------------------------
    def timelapses(self, prompts: Sequence[np.ndarray], *, desc: str = "timelapses") -> np.ndarray:
        """Predicted timelapse (months) of TimeBetweenCells prompts that end with ``<eoq>``."""
        from ._time import predict_timelapse

        eoq = self.model.config.eoq_token_id
        self.model.config._require_time_tokens()
        bad = [i for i, p in enumerate(prompts) if len(p) == 0 or int(p[-1]) != eoq]
        if bad:
            raise ValueError(
                f"prompts {bad[:5]} do not end with <eoq> ({eoq}); pass TimeBetweenCells prompts "
                "up to <eoq> (`PromptEncoder.encode(...)['input_ids']`)"
            )
        out = np.empty(len(prompts), dtype=np.float64)
        for idx, ids, mask, lengths in self._batches(prompts, desc, "prompt"):
            last = torch.as_tensor(lengths - 1, device=self.device)[:, None]
            logits = self.model(ids, attention_mask=mask, logits_positions=last).logits[:, 0]
            with torch.autocast(device_type=self.device.type, enabled=False):
                months = predict_timelapse(logits.float(), self.model.config)[0]
            out[idx] = months.double().cpu()
        return out

    def embeddings(
        self,
        cells: Sequence[np.ndarray],
        *,
        emb_layer: int = -1,
        mode: str = "mean",
        desc: str = "embed",
    ) -> np.ndarray:
        """``(n, hidden_size)`` float32 embeddings of ``<bos> genes… <eos>`` cells."""
        out = np.zeros((len(cells), self.model.config.hidden_size), dtype=np.float32)
        for idx, ids, mask, _ in self._batches(cells, desc, "cell"):
            emb = self.model.embed(ids, attention_mask=mask, emb_layer=emb_layer, mode=mode)
            out[idx] = emb.float().cpu().numpy()
        return out

    def attention(
        self, cells: Sequence[np.ndarray], *, layers: Sequence[int], desc: str = "attention"
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Attention each token of each cell receives, relative to a uniform head.

        Yields ``(index, received)`` per cell, ``received`` of shape
        ``(len(layers) * heads, len(cell))``: for key position ``j`` the mean over later real
        queries ``i > j`` of ``A[i, j] · (i + 1)`` (1 = uniform attention; the causal mask's
        bias towards early positions removed); ``nan`` at the last token. Eager attention.
        """
        for idx, ids, mask, lengths in self._batches(cells, desc, "cell", need_weights=True):
            received = _received(self.model, ids, mask)[:, list(layers)]
            received = received.flatten(1, 2).float().cpu().numpy()
            for b, i in enumerate(idx):
                yield int(i), received[b, :, : lengths[b]]

    def generate(
        self,
        prompts: Sequence[np.ndarray],
        *,
        max_genes: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        random_state: Any = 0,
        desc: str = "generate",
    ) -> list[np.ndarray]:
        """New cells ``<bos> genes… <eos>`` (at most ``max_genes``) after NextCell prompts."""
        config = self.model.config
        bos, eos = config.bos_token_id, config.eos_token_id
        gen = np.random.default_rng(random_state)
        out: list[np.ndarray] = [np.zeros(0, np.int64)] * len(prompts)
        _check_ids(prompts, config.vocab_size)
        with self._precision(), _progress(len(prompts), desc, "cell") as bar:
            for lo in range(0, len(prompts), self.batch_size):
                batch = [
                    torch.as_tensor(np.asarray(p, dtype=np.int64))
                    for p in prompts[lo : lo + self.batch_size]
                ]
                new = self.model.generate(
                    batch,
                    max_new_tokens=max_genes + 1,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    random_state=int(gen.integers(2**31 - 1)),
                )
                for j, genes in enumerate(new):
                    genes = genes.cpu().numpy().astype(np.int64)
                    genes = genes[genes != eos][:max_genes]
                    out[lo + j] = np.concatenate([[bos], genes, [eos]])
                bar.update(len(batch))
        return out

    # --- batching -----------------------------------------------------------------------------
    def _batches(
        self, seqs: Sequence[np.ndarray], desc: str, unit: str, *, need_weights: bool = False
    ):
        """``(indices, ids, mask or None, lengths)`` per batch, sorted by length within blocks.

        The caller's forward passes run under :func:`torch.inference_mode` and the autocast of
        :attr:`dtype` (both entered here).
        """
        _check_ids(seqs, self.model.config.vocab_size)
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        pad = self.model.config.pad_token_id or 0
        precision = self._precision(need_weights)
        with torch.inference_mode(), precision, _progress(len(seqs), desc, unit) as bar:
            for lo in range(0, len(seqs), _BLOCK):
                block = np.arange(lo, min(len(seqs), lo + _BLOCK))
                block = block[np.argsort(lengths[block], kind="stable")]
                for s in range(0, len(block), self.batch_size):
                    idx = block[s : s + self.batch_size]
                    width = int(lengths[idx].max())
                    ids = np.full((len(idx), width), pad, dtype=np.int64)
                    for b, i in enumerate(idx):
                        ids[b, : lengths[i]] = seqs[i]
                    mask = None
                    if lengths[idx].min() < width:
                        valid = np.arange(width)[None, :] < lengths[idx][:, None]
                        mask = torch.from_numpy(valid).to(self.device)
                    yield idx, torch.from_numpy(ids).to(self.device), mask, lengths[idx]
                    bar.update(len(idx))


def _check_ids(seqs: Sequence[np.ndarray], vocab_size: int) -> None:
    """Every sequence non-empty, integer, with ids in ``[0, vocab_size)`` (checked on the host)."""
    for i, s in enumerate(seqs):
        arr = np.asarray(s)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"sequence {i} must be a non-empty 1-D array of integer token ids")
        if arr.min() < 0 or arr.max() >= vocab_size:
            raise ValueError(
                f"sequence {i} has token ids outside [0, {vocab_size}) (the model's vocabulary)"
            )


def _progress(n: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=n, desc=desc, unit=unit, leave=False, disable=not settings.show_progress or n == 0
    )


def _received(model: MaxToki, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, layers, heads, T)`` attention received per key, relative to uniform."""
    out = model(
        ids,
        attention_mask=mask,
        output_attentions=True,
        logits_positions=torch.zeros(1, dtype=torch.long, device=ids.device),
    )
    batch, steps = ids.shape
    valid = torch.ones(batch, steps, dtype=torch.bool, device=ids.device) if mask is None else mask
    pos = torch.arange(steps, device=ids.device)
    later = pos[:, None] > pos[None, :]  # (query i, key j): i > j
    weight = (later[None] & valid[:, :, None] & valid[:, None, :]).float()  # (B, T_i, T_j)
    n_later = weight.sum(1)  # (B, T_j)
    scale = (pos + 1).float()[None, :, None] * weight
    layers = [
        torch.einsum("bhij,bij->bhj", probs.float(), scale) / n_later[:, None, :].clamp_min(1)
        for probs in out.attentions
    ]
    result = torch.stack(layers, dim=1)
    return result.masked_fill((n_later == 0)[:, None, None, :], float("nan"))
