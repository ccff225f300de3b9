"""The MaxToki decoder: a Llama decoder whose state dict is that of HF ``LlamaForCausalLM``.

The forward pass reads top to bottom here (embeddings → decoder layers → norm → logits); the
attention of each layer, its mask and kernel choice live in :mod:`._attention`. Generation,
vocabulary growth and checkpoint I/O are methods that delegate to their own modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._vocab import GeneVocab
from . import _generate, _io, _resize
from ._attention import Attention, AttentionMask, resolve_backend
from ._config import MaxTokiConfig
from ._kv_cache import KVCache
from ._rope import RotaryEmbedding


@dataclass
class MaxTokiOutput:
    """Output of :class:`~maxtoki.models.MaxToki`.

    Attributes
    ----------
    logits
        ``(B, T, vocab)``, or only the positions asked for with ``logits_positions``.
    hidden_states
        With ``output_hidden_states=True``: ``num_hidden_layers + 1`` tensors ``(B, T, hidden)``,
        the embeddings, the output of each layer and, last, the final-normed output (the HF
        convention).
    attentions
        With ``output_attentions=True``: one ``(B, heads, T, S)`` tensor of attention
        probabilities per layer (eager backend).
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class _RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32, scale in the input dtype: as HF LlamaRMSNorm, bit for bit
        dtype = x.dtype
        if hasattr(F, "rms_norm"):  # torch >= 2.4: one fused kernel
            x = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        else:
            x = x.float()
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class _MLP(nn.Module):
    def __init__(self, config: MaxTokiConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _DecoderLayer(nn.Module):
    def __init__(self, config: MaxTokiConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = _MLP(config)
        self.input_layernorm = _RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = _RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, **attn_kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, probs = self.self_attn(self.input_layernorm(x), cos, sin, **attn_kwargs)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), probs


class _Backbone(nn.Module):
    """``LlamaModel``: ``embed_tokens``, ``layers``, ``norm`` (named like HF's ``model.*``)."""

    def __init__(self, config: MaxTokiConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(
            _DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = _RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


class MaxToki(nn.Module):
    """The MaxToki decoder (LLaMA: RMSNorm, SwiGLU, RoPE, grouped-query attention, no biases).

    Parameter names are those of ``transformers.LlamaForCausalLM`` (``model.embed_tokens.weight``,
    ``model.layers.0.self_attn.q_proj.weight``, …, ``model.norm.weight``, ``lm_head.weight``), so
    :meth:`from_pretrained` reads the official release and :meth:`save_pretrained` writes folders
    that ``transformers`` loads.

    Parameters
    ----------
    config
        The configuration; weights are initialised like HF (normal, std ``initializer_range``).
    vocab
        The :class:`~maxtoki.pp.GeneVocab` of the model's tokens (see :attr:`vocab`), or ``None``.
    """

    def __init__(self, config: MaxTokiConfig, vocab: GeneVocab | None = None) -> None:
        super().__init__()
        if not isinstance(config, MaxTokiConfig):
            raise TypeError(f"config must be a MaxTokiConfig, got {type(config).__name__}.")
        self.config = config
        self.model = _Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init_weights)
        self._backends: dict[tuple, str] = {}  # resolved attention kernels, see _attn_backend
        self._vocab: GeneVocab | None = None
        self.vocab = vocab

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and module.weight.device.type != "meta":
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, _RMSNorm):
            nn.init.ones_(module.weight)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return self.lm_head.weight.dtype

    def num_parameters(self) -> int:
        """Number of parameters (tied embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())

    def blocks(self) -> nn.ModuleList:
        """The decoder layers in order (what ``mt.train.parallelize`` checkpoints and shards)."""
        return self.model.layers

    @property
    def vocab(self) -> GeneVocab | None:
        """The vocabulary the model reads and writes (tokens and gene medians), or ``None``.

        Setting it checks the vocabulary against the config (``vocab_size``, the pad/bos/eos
        ids and, for a temporal vocabulary, the time-token layout and ``<boq>``/``<eoq>``: the
        fields of :meth:`~maxtoki.pp.GeneVocab.model_config_fields`) and raises a ``ValueError``
        naming every field that disagrees. :meth:`save_pretrained` writes it beside
        ``config.json``; :meth:`from_pretrained` reads it back.
        """
        return self._vocab

    @vocab.setter
    def vocab(self, vocab: GeneVocab | None) -> None:
        if vocab is not None:
            if not isinstance(vocab, GeneVocab):
                raise TypeError(f"vocab must be a GeneVocab or None, got {type(vocab).__name__}.")
            wrong = [
                f"{name} (config {getattr(self.config, name)!r}, vocabulary {value!r})"
                for name, value in vocab.model_config_fields().items()
                if getattr(self.config, name) != value
            ]
            if wrong:
                raise ValueError(
                    f"the vocabulary ({vocab!r}) disagrees with the model config: "
                    + "; ".join(wrong)
                    + ". Use the vocabulary the model was built for."
                )
        self._vocab = vocab

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        seq_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        logits_positions: torch.Tensor | None = None,
    ) -> MaxTokiOutput:
        """Logits of the next token at every (or some) position.

        Parameters
        ----------
        input_ids
            ``(B, T)`` integer token ids. They must lie in ``[0, vocab_size)``; they are not
            checked here (that would cost a host sync on every step): the boundaries check them
            (the :class:`~maxtoki.models.Collator`, :meth:`generate`, ``mt.tl``).
        position_ids
            ``(B, T)`` RoPE positions. Default: counted over non-padding tokens, continuing after
            ``kv_cache``, and restarting at 0 for each document of ``seq_ids``.
        attention_mask
            ``(B, T)`` bool or 0/1, ``False`` at padding (right or left). Used as given: pass
            ``None`` when there is no padding (then the cheaper causal-only kernels run).
        seq_ids
            ``(B, T)`` int document ids of prompts packed into one row (contiguous runs):
            attention is causal within each document only. Not with ``kv_cache``.
        kv_cache
            A :class:`KVCache`; the new tokens are appended to it.
        output_hidden_states
            Also return the hidden states of every layer.
        output_attentions
            Also return attention probabilities (runs the eager backend).
        logits_positions
            Compute logits only here: a ``(B, T)`` bool mask (→ logits ``(N, vocab)`` in
            row-major order), ``(K,)`` indices shared by all rows or ``(B, K)`` per-row indices
            (→ ``(B, K, vocab)``).

        Returns
        -------
        :class:`MaxTokiOutput` with ``logits`` and optional ``hidden_states``/``attentions``.
        """
        hidden, all_hidden, attentions = self._trunk(
            input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            seq_ids=seq_ids,
            kv_cache=kv_cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        logits = self.lm_head(_select_positions(hidden, logits_positions))
        return MaxTokiOutput(logits=logits, hidden_states=all_hidden, attentions=attentions)

    def _trunk(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        seq_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        upto: int | None = None,
    ):
        """Hidden states after the final norm (or after ``upto`` layers, unnormed)."""
        input_ids = _check_ids(input_ids, self.device)
        batch, steps = input_ids.shape
        device = input_ids.device
        query_valid = None
        if attention_mask is not None:
            query_valid = _check_shaped(
                attention_mask, "attention_mask", (batch, steps), device
            ).bool()
        if seq_ids is not None:
            if kv_cache is not None:
                raise ValueError("seq_ids (packed prompts) cannot be combined with a kv_cache.")
            seq_ids = _check_shaped(seq_ids, "seq_ids", (batch, steps), device).long()
        if position_ids is None:
            position_ids = _default_positions(batch, steps, device, query_valid, seq_ids, kv_cache)
        else:
            position_ids = _check_shaped(
                position_ids, "position_ids", (batch, steps), device
            ).long()
        if kv_cache is not None:
            offset = kv_cache.begin(input_ids, query_valid)
            mask = AttentionMask(steps, offset + steps, offset, kv_cache.valid_keys(), query_valid)
        else:
            mask = AttentionMask(steps, steps, 0, query_valid, query_valid, seq_ids)

        dtype = self.dtype
        if device.type == "cuda" and torch.is_autocast_enabled():
            if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
                dtype = torch.get_autocast_dtype("cuda")
            else:
                dtype = torch.get_autocast_gpu_dtype()
        backend = self._attn_backend(device, dtype, output_attentions)
        x = self.model.embed_tokens(input_ids)
        cos, sin = self.model.rotary_emb(position_ids, x.dtype)
        all_hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        layers = self.model.layers if upto is None else self.model.layers[:upto]
        for layer in layers:
            x, probs = layer(
                x,
                cos,
                sin,
                mask=mask,
                backend=backend,
                kv_cache=kv_cache,
                need_weights=output_attentions,
            )
            if output_hidden_states:
                all_hidden.append(x)
            if output_attentions:
                attentions.append(probs)
        if kv_cache is not None:
            kv_cache.end()
        if upto is None or upto >= len(self.model.layers):
            x = self.model.norm(x)
            if output_hidden_states:
                all_hidden[-1] = x
        return (
            x,
            None if all_hidden is None else tuple(all_hidden),
            None if attentions is None else tuple(attentions),
        )

    def _attn_backend(self, device: torch.device, dtype: torch.dtype, need_weights: bool) -> str:
        """:func:`resolve_backend` once per setting, device type and dtype, cached on the model.

        A compiled forward pass then reads a dict instead of tracing the choice and its log line.
        """
        config = self.config
        key = (config.attn_backend, config.attention_head_dim, device.type, dtype, need_weights)
        backend = self._backends.get(key)
        if backend is None:
            backend = resolve_backend(
                config.attn_backend,
                device=device,
                dtype=dtype,
                head_dim=config.attention_head_dim,
                need_weights=need_weights,
            )
            self._backends[key] = backend
        return backend

    # -- tasks ----------------------------------------------------------------------------------
    def new_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows of up to ``max_len`` tokens."""
        return KVCache(self.config.num_hidden_layers, batch_size, max_len)

    def generate(
        self,
        prompts: list[torch.Tensor] | torch.Tensor,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        random_state: torch.Generator | int | None = None,
        use_cache: bool = True,
    ) -> list[torch.Tensor]:
        """Generate one cell per prompt, stopping at ``<eos>``.

        Prompts of different lengths are left-padded internally (positions count real tokens only).
        The prompt is prefilled into a preallocated :class:`KVCache`, then each step feeds one token
        under :func:`torch.inference_mode`. Special tokens (ids < 4 except ``<eos>``), time tokens,
        ``<boq>``/``<eoq>`` and every gene already in the cell are masked, so a cell never repeats a
        gene; ``<eos>`` is allowed once the cell has a gene. A prompt that ends with ``<eoq>`` (a
        NextCell prompt) gets the ``<bos>`` that opens the answer appended; genes after a final,
        unclosed ``<bos>`` of the prompt count as already generated.

        Parameters
        ----------
        prompts
            A list of 1-D integer tensors (or one 1-D tensor).
        max_new_tokens
            Most tokens to generate per cell (``<eos>`` included).
        temperature
            Softmax temperature (> 0).
        top_k
            Sample among the ``top_k`` most likely tokens only.
        top_p
            Nucleus sampling: among the most likely tokens whose probability adds up to ``top_p``.
        greedy
            Take the most likely token (ignores temperature, top-k, top-p and ``random_state``).
        random_state
            A :class:`torch.Generator` or a seed, for reproducible sampling.
        use_cache
            ``False`` recomputes the whole prompt at every step (slow; for tests and benchmarks).

        Returns
        -------
        One 1-D tensor of generated ids per prompt, ending with ``<eos>`` when one was generated.
        """
        return _generate.generate(
            self,
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            greedy=greedy,
            random_state=random_state,
            use_cache=use_cache,
        )

    def embed(
        self,
        input_ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        emb_layer: int = -1,
        mode: Literal["mean", "eos"] = "mean",
        gene_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed tokenised cells.

        Parameters
        ----------
        input_ids
            ``(B, T)`` token ids, e.g. ``<bos> genes… <eos>`` padded on the right.
        attention_mask
            ``(B, T)``, ``False`` at padding.
        emb_layer
            Index into the ``num_hidden_layers + 1`` hidden states: 0 the token embeddings, ``-1``
            (default) the final-normed output, ``-2`` the output of the second-to-last layer, …
        mode
            ``"mean"``: mean over the gene tokens of each row; ``"eos"``: the hidden state at the
            last ``<eos>`` of each row.
        gene_mask
            ``(B, T)`` bool positions to average in ``"mean"`` mode; default every gene token.

        Returns
        -------
        ``(B, hidden_size)`` float32 embeddings on the model's device.
        """
        n_states = self.config.num_hidden_layers + 1
        if (
            isinstance(emb_layer, bool)
            or not isinstance(emb_layer, int)
            or not -n_states <= emb_layer < n_states
        ):
            raise ValueError(
                f"emb_layer must be an int in [{-n_states}, {n_states - 1}], got {emb_layer!r}."
            )
        if mode not in ("mean", "eos"):
            raise ValueError(f"mode must be 'mean' or 'eos', got {mode!r}.")
        layer = emb_layer % n_states
        with torch.inference_mode():
            hidden, _, _ = self._trunk(input_ids, attention_mask=attention_mask, upto=layer)
            ids = input_ids.to(hidden.device)
            valid = torch.ones_like(ids, dtype=torch.bool)
            if attention_mask is not None:
                valid = attention_mask.to(hidden.device).bool()
            if mode == "eos":
                eos = self.config.eos_token_id
                is_eos = (ids == eos) & valid
                missing = (~is_eos.any(1)).nonzero()[:, 0].tolist()
                if missing:
                    raise ValueError(
                        f"mode='eos' needs an <eos> token ({eos}) in every row; "
                        f"rows {missing[:10]} have none."
                    )
                last = (is_eos * torch.arange(ids.shape[1], device=ids.device)).argmax(1)
                return hidden[torch.arange(ids.shape[0], device=ids.device), last].float()
            if gene_mask is None:
                gene_mask = ~self.config.non_gene_mask(ids.device)[ids]
            elif tuple(gene_mask.shape) != tuple(ids.shape):
                raise ValueError(
                    f"gene_mask must have the shape of input_ids {tuple(ids.shape)}, "
                    f"got {tuple(gene_mask.shape)}."
                )
            weights = (gene_mask.to(ids.device).bool() & valid).float()
            empty = (weights.sum(1) == 0).nonzero()[:, 0].tolist()
            if empty:
                raise ValueError(
                    "mode='mean' needs at least one gene token per row; "
                    f"rows {empty[:10]} have none."
                )
            return (hidden.float() * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)

    def resize_token_embeddings(
        self,
        new_vocab_size: int,
        *,
        time_token_init: Literal["smooth", "mean"] = "smooth",
        random_state: torch.Generator | int | None = None,
    ) -> None:
        """Add rows to ``embed_tokens`` and ``lm_head`` (in place); old rows are kept.

        New rows are the mean of the existing rows plus small noise (1% of their std), so new tokens
        start neither dominant nor ignored. When the config has no time tokens yet and exactly
        ``n_time_tokens + 2`` rows are added, they become the official temporal layout (time tokens,
        then ``<boq>``, ``<eoq>``). New time-token rows are then initialised smoothly in their month
        value (:func:`init_time_token_embeddings`) unless ``time_token_init="mean"``.

        Parameters
        ----------
        new_vocab_size
            The new vocabulary size (>= the current one).
        time_token_init
            ``"smooth"`` or ``"mean"`` for new time-token rows.
        random_state
            A :class:`torch.Generator` or a seed.
        """
        _resize.resize_token_embeddings(
            self, new_vocab_size, time_token_init=time_token_init, random_state=random_state
        )

    def add_time_tokens(self, *, random_state: torch.Generator | int | None = None) -> None:
        """Stage 1 → stage 2: add the official time tokens, ``<boq>`` and ``<eoq>`` (in place).

        Appends ``n_time_tokens`` (3,000: −1500…1499 months) time-token rows and the two question
        tokens after the gene vocabulary — for the released 20,275 tokens, the released ids
        20,275…23,276 — with the time-token rows initialised smoothly in their month value. Every
        existing row is kept, so a prompt of genes gets the same logits on its tokens as before;
        the vocabulary the model carries gains the tokens too.

        Parameters
        ----------
        random_state
            A :class:`torch.Generator` or a seed for the new rows.
        """
        if self.config.has_time_tokens:
            raise ValueError("the model already has time tokens (a temporal vocabulary)")
        extra = self.config.n_time_tokens + 2
        self.resize_token_embeddings(self.config.vocab_size + extra, random_state=random_state)

    def extend_context(
        self,
        max_position_embeddings: int = 16_384,
        *,
        factor: float = 4.0,
        low_freq_factor: float = 1.0,
        high_freq_factor: float = 4.0,
    ) -> None:
        """Extend the context with Llama-3.1 RoPE scaling (in place), as the official stage 2.

        The current context (4,096 for the released models) becomes
        ``original_max_position_embeddings`` of a ``llama3`` ``rope_scaling`` and the rotary
        tables are rebuilt; ``save_pretrained`` writes the scaling into ``config.json``, where
        ``transformers`` reads it too. The weights are unchanged.

        Parameters
        ----------
        max_position_embeddings
            The new context length (16,384 in the official stage 2).
        factor
            How much the low frequencies are slowed down: 4 in the official training example,
            8 as the official inference default.
        low_freq_factor, high_freq_factor
            The band of wavelengths that is interpolated (1 and 4 officially).
        """
        _resize.extend_context(
            self, max_position_embeddings, factor=factor, low_freq_factor=low_freq_factor,
            high_freq_factor=high_freq_factor,
        )  # fmt: skip

    # -- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        attn_backend: Literal["auto", "flash", "sdpa", "eager"] | None = None,
    ) -> MaxToki:
        """Load a Hugging Face ``LlamaForCausalLM`` folder or Hub repo (safetensors only).

        Parameters
        ----------
        path
            Folder with ``config.json`` and ``model.safetensors`` (or a sharded
            ``model.safetensors.index.json``); a vocabulary beside them
            (``token_dictionary.json`` and ``gene_median_dictionary.json``) becomes
            :attr:`vocab`, checked against the config; without one ``vocab`` is ``None``.
            A name that is not a local folder is a Hugging Face Hub repo id (``"org/name"``):
            only those files are fetched, into the Hub's cache (needs ``pip install
            'maxtoki[hub]'``); never code, never pickle weights.
        subfolder
            The model's folder inside ``path`` or the repo (e.g. ``"stage2"``).
        revision
            Hub branch, tag or commit hash (``None``: ``"main"``).
        cache_dir
            Hub cache folder (``None``: ``HF_HUB_CACHE``, by default
            ``~/.cache/huggingface/hub``).
        local_files_only
            Read the Hub cache only, never the network; also on when the environment sets
            ``HF_HUB_OFFLINE=1``.
        device
            Where to put the model; ``None`` uses ``maxtoki.settings.device`` (``"auto"``: CUDA
            when available).
        dtype
            Cast the weights; ``None`` keeps the stored dtype.
        attn_backend
            Override ``config.attn_backend``.
        """
        return _io.load_pretrained(
            cls,
            path,
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            device=device,
            dtype=dtype,
            attn_backend=attn_backend,
        )

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (atomically) that transformers loads.

        The vocabulary, when the model carries one, goes beside them (``token_dictionary.json``
        and ``gene_median_dictionary.json``).
        """
        _io.save_pretrained(self, path)


def _check_ids(input_ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Metadata checks only (type, shape, dtype): the values are the callers' to check."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}.")
    if input_ids.ndim != 2:
        raise ValueError(
            f"input_ids must have shape (batch, tokens), got {tuple(input_ids.shape)}; "
            "add a batch dimension with `ids[None]`."
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integers, got {input_ids.dtype}.")
    return input_ids.to(device=device, dtype=torch.long)


def _check_shaped(
    x: torch.Tensor, name: str, shape: tuple[int, int], device: torch.device
) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have the shape of input_ids {shape}, got {tuple(x.shape)}.")
    return x.to(device)


def _default_positions(batch, steps, device, query_valid, seq_ids, kv_cache) -> torch.Tensor:
    idx = torch.arange(steps, device=device).expand(batch, steps)
    if seq_ids is not None:  # restart at each new document
        new_doc = torch.ones_like(seq_ids, dtype=torch.bool)
        new_doc[:, 1:] = seq_ids[:, 1:] != seq_ids[:, :-1]
        return idx - torch.where(new_doc, idx, 0).cummax(1).values
    start = 0
    if kv_cache is not None and kv_cache.n_valid is not None:
        start = kv_cache.n_valid[:, None]
    if query_valid is None:
        return idx + start
    return (query_valid.long().cumsum(1) - 1).clamp_min(0) + start


def _select_positions(hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    if positions is None:
        return hidden
    batch, steps, size = hidden.shape
    if not isinstance(positions, torch.Tensor):
        raise TypeError("logits_positions must be a bool mask or an integer index tensor.")
    positions = positions.to(hidden.device)
    if positions.dtype == torch.bool:
        if tuple(positions.shape) != (batch, steps):
            raise ValueError(
                f"a bool logits_positions must have shape {(batch, steps)}, "
                f"got {tuple(positions.shape)}."
            )
        return hidden[positions]
    if positions.dtype.is_floating_point:
        raise TypeError("logits_positions must be a bool mask or an integer index tensor.")
    if positions.ndim == 1:
        return hidden[:, positions]
    if positions.ndim == 2 and positions.shape[0] == batch:
        return hidden.gather(1, positions[..., None].expand(-1, -1, size))
    raise ValueError(
        "logits_positions must be (B, T) bool, (K,) or (B, K) indices; "
        f"got {tuple(positions.shape)}."
    )
