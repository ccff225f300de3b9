from __future__ import annotations

import html
import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._anndata import group_labels, is_number, numeric_obs, positive_int, resolve_modality
from .._docs import inject_docs
from .._keys import TOKENS_KEY, read_tokens
from .._optional import import_optional
from .._validate import max_genes_of, model_vocab
from ._utils import require_columns

if TYPE_CHECKING:
    from anndata import AnnData

    from .._vocab import GeneVocab
    from ..models import MaxToki

_NO_KERNEL = (
    "mt.pl.explore: not running in a Jupyter kernel, so the app cannot be displayed. It is "
    "returned anyway: drive it through `app.controls` (set values, call `.click()`) or open it "
    "in a notebook, where the returned VBox shows as the cell's output."
)


@inject_docs
def explore(
    adata: AnnData,
    *,
    model: MaxToki,
    vocab: GeneVocab | None = None,
    time_key: str = "age_months",
    groupby: str | Sequence[str] = ("cell_type", "sex"),
    donor_key: str | None = "donor",
    gene_symbols: str | None = None,
    gene_set: str | None = "is_tf",
    n_top_genes: int = 20,
    max_genes: int | None = None,
    temperature: float = 1.0,
    device: str | None = None,
    random_state: int = 0,
    tokens_key: str = TOKENS_KEY,
    mod: str = "rna",
) -> Any:
    """An ipywidgets app to ask a MaxToki model about one cell at a time.

    Pick a group (e.g. cell type × sex), context cells of that group (listed by age) and a
    query cell, then

    - **Predict time**: the model reads ``context cells, Δt…, <boq> query <eoq>``
      (TimeBetweenCells) and predicts the timelapse from the last context cell to the query; the
      query's predicted age is shown next to its true age.
    - **Generate cell**: the model writes a new cell ``Δt`` months (slider) after the last
      context cell (NextCell); its top genes are listed, with their rank in the real cell of the
      group closest to the expected age.
    - **Show attention**: the attention the prediction token ``<eoq>`` pays to each of the
      query's top genes (one head, or the mean of all), relative to uniform attention.

    Parameters
    ----------
    adata
        Tokenized AnnData (or MuData, see ``mod``) with ages (``obs[time_key]``) and the
        ``groupby`` columns.
    {temporal_model}
    {vocab}
    {time_key}
    groupby
        ``obs`` column(s) defining the groups.
    donor_key
        ``obs`` column of donors, shown in the cell lists; the default query avoids the context
        donors.
    gene_symbols
        ``var`` column of gene names to show (default ``var_names``).
    gene_set
        Boolean ``var`` column of genes to highlight (default ``'is_tf'``; ignored when missing).
    n_top_genes
        Genes listed for a generated cell and drawn in the attention view.
    {max_genes}
    temperature
        Sampling temperature of **Generate cell**.
    {device}
    {random_state}
        It seeds **Generate cell**.
    {tokens_key}
    {mod}

    Returns
    -------
    The app, an :class:`ipywidgets.VBox` (display it as a cell's last expression). Its
    ``controls`` attribute maps names to the widgets (``group``, ``context``, ``query``,
    ``timelapse``, ``predict``, ``generate``, ``head``, ``attention``, ``output``, ``plot``,
    ``status``) so that it can be driven from code. Outside a Jupyter kernel the app is
    returned with a warning. Without ipywidgets (``pip install 'maxtoki[explore]'``) an
    :class:`ImportError` says how to install it.
    """
    import_optional("ipywidgets", extra="explore", purpose="mt.pl.explore (an ipywidgets app)")
    adata, _ = resolve_modality(adata, mod)
    n_top_genes = positive_int("n_top_genes", n_top_genes)
    positive_int("max_genes", max_genes, optional=True)
    if not is_number(temperature) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    state = _State(
        adata,
        model,
        vocab,
        time_key=time_key,
        groupby=groupby,
        donor_key=donor_key,
        gene_symbols=gene_symbols,
        gene_set=gene_set,
        max_genes=max_genes,
        device=device,
        random_state=random_state,
        tokens_key=tokens_key,
    )
    app = _App(state, n_top_genes=int(n_top_genes), temperature=float(temperature)).box
    if not _in_kernel():
        warnings.warn(_NO_KERNEL, UserWarning, stacklevel=2)
        app.controls["status"].value = f"<i>{html.escape(_NO_KERNEL)}</i>"
    return app


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _State:
    """The data and model side of the app (no widgets): prompts, predictions, generation.

    An application over the inference layer: tokens through the slot contract, prompts from
    :class:`~maxtoki.pp.PromptEncoder`, the model through :class:`~maxtoki.models.BatchRunner`.
    """

    def __init__(
        self,
        adata,
        model,
        vocab,
        *,
        time_key,
        groupby,
        donor_key,
        gene_symbols,
        gene_set,
        max_genes,
        device,
        random_state,
        tokens_key,
    ):
        import pandas as pd

        from ..models import BatchRunner
        from ..pp import PromptEncoder

        self.vocab = model_vocab(model, vocab, need_time=True, what="mt.pl.explore")
        self.adata, self.model = adata, model
        self.times = numeric_obs(adata, time_key, "adata", "pass `time_key=` naming ages in months")
        tokens = read_tokens(adata, tokens_key, self.vocab)
        self.cells = tokens.cells()
        cols = [groupby] if isinstance(groupby, str) else list(groupby)
        require_columns(adata.obs, cols, "adata.obs", "pass existing obs columns as `groupby`")
        self.labels = group_labels(adata.obs, groupby, "adata")
        self.donors = (
            adata.obs[donor_key].astype(str).to_numpy()
            if donor_key is not None and donor_key in adata.obs
            else None
        )
        known = np.isfinite(self.times)
        counts = pd.Series(self.labels[known]).value_counts()
        distinct = pd.Series(self.times[known]).groupby(self.labels[known]).nunique()
        self.groups = sorted(str(g) for g in counts.index if distinct[g] >= 2)
        if not self.groups:
            raise ValueError(
                f"no group of {cols} has cells at two or more ages in obs[{time_key!r}]; "
                "pass another `groupby`"
            )
        self.group_sizes = {g: int(counts[g]) for g in self.groups}
        self._gene_names(adata, gene_symbols, gene_set, tokens.slots.token_id)
        self.max_genes = max_genes_of(model, max_genes)
        self.encoder = PromptEncoder(
            self.vocab, max_length=model.config.max_position_embeddings, max_genes=self.max_genes
        )
        self.runner = BatchRunner(model, batch_size=1, device=device)
        self.gen = np.random.default_rng(random_state)
        self.time_key = time_key

    def _gene_names(self, adata, gene_symbols, gene_set, token_id_key) -> None:
        import pandas as pd

        if gene_symbols is not None:
            require_columns(adata.var, [gene_symbols], "adata.var", "pass a var column of names")
            names = adata.var[gene_symbols].astype(str).to_numpy()
        else:
            names = np.asarray(adata.var_names.astype(str))
        in_set = (
            adata.var[gene_set].to_numpy() == True  # noqa: E712 (object columns)
            if gene_set is not None and gene_set in adata.var
            else np.zeros(adata.n_vars, dtype=bool)
        )
        self.gene_set = gene_set if in_set.any() else None
        self.name_of: dict[int, str] = {}
        self.in_set: dict[int, bool] = {}
        ids = np.full(adata.n_vars, np.nan)
        if token_id_key in adata.var:
            ids = pd.to_numeric(adata.var[token_id_key], errors="coerce").to_numpy(float)
        for j in np.flatnonzero(np.isfinite(ids)):
            t = int(ids[j])
            if t not in self.name_of:
                self.name_of[t], self.in_set[t] = names[j], bool(in_set[j])

    # --- lists --------------------------------------------------------------------------------
    def rows_of(self, group: str) -> np.ndarray:
        """Cells of ``group`` with a known age, by age."""
        rows = np.flatnonzero((self.labels == group) & np.isfinite(self.times))
        return rows[np.argsort(self.times[rows], kind="stable")]

    def describe(self, row: int) -> str:
        name = self.adata.obs_names[row]
        donor = f"  donor {self.donors[row]}" if self.donors is not None else ""
        return f"{self.times[row] / 12:5.1f} y  {name}{donor}"

    def gene_name(self, token: int) -> str:
        name = self.name_of.get(int(token))
        return name if name is not None else str(self.vocab.tokens[int(token)])

    def check(self, context: Sequence[int], query: int | None = None) -> list[int]:
        ctx = sorted({int(r) for r in context}, key=lambda r: (self.times[r], r))
        if not ctx:
            raise ValueError("select at least one context cell")
        if query is not None and int(query) in ctx:
            raise ValueError("the query cell is one of the context cells; pick another query")
        return ctx

    # --- model --------------------------------------------------------------------------------
    def _prompt(self, ctx: list[int], query: int | None = None, dt: int | None = None) -> dict:
        dts = np.rint(np.diff(self.times[ctx]))
        cells = [self.cells[r] for r in ctx]
        if query is None:
            return self.encoder.encode(cells, dts, task="NextCell", dt_query=int(dt))
        return self.encoder.encode(cells, dts, task="TimeBetweenCells", query=self.cells[query])

    def predict(self, context: Sequence[int], query: int) -> dict[str, float]:
        ctx = self.check(context, query)
        prompt = self._prompt(ctx, query)["input_ids"]
        dt = float(self.runner.timelapses([prompt], desc="explore")[0])
        last = float(self.times[ctx[-1]])
        return {
            "last_context_age": last,
            "true_age": float(self.times[query]),
            "true_dt": float(self.times[query]) - last,
            "predicted_dt": dt,
            "predicted_age": last + dt,
        }

    def generate(self, context: Sequence[int], dt: int, temperature: float) -> np.ndarray:
        ctx = self.check(context)
        lo, hi = self.vocab.time_range
        if not lo <= int(dt) <= hi:
            raise ValueError(f"the timelapse must lie within the time tokens [{lo}, {hi}] months")
        n = self.max_genes or max(len(self.cells[r]) - 2 for r in ctx)
        prompt = self._prompt(ctx, dt=dt)["input_ids"]
        out = self.runner.generate(
            [prompt], max_genes=int(n), temperature=temperature, random_state=self.gen
        )
        return out[0][1:-1]

    def nearest_real(self, group: str, age: float, exclude: Sequence[int]) -> int | None:
        rows = [r for r in self.rows_of(group) if r not in set(exclude)]
        if not rows:
            return None
        return int(rows[int(np.argmin(np.abs(self.times[rows] - age)))])

    def attention(self, context: Sequence[int], query: int) -> tuple[np.ndarray, np.ndarray]:
        """Query gene tokens (rank order) and ``<eoq>``'s attention to them, ``(L, H, genes)``."""
        import torch

        ctx = self.check(context, query)
        ex = self._prompt(ctx, query)
        ids = np.asarray(ex["input_ids"])
        eoq = int(ex["eoq_pos"])
        boq = int(np.flatnonzero(ids[:eoq] == self.vocab.boq_id)[-1])
        genes = ids[boq + 2 : eoq - 1]
        dev = self.runner.device
        x = torch.as_tensor(ids, dtype=torch.long, device=dev)[None]
        with torch.inference_mode():
            out = self.model(
                x, output_attentions=True, logits_positions=torch.tensor([eoq], device=dev)
            )
            probs = torch.stack([a[0, :, eoq, :].float() for a in out.attentions]).cpu().numpy()
        return genes, probs[:, :, boq + 2 : eoq - 1] * (eoq + 1)


class _App:
    """The widgets and their callbacks."""

    def __init__(self, state: _State, *, n_top_genes: int, temperature: float):
        import ipywidgets as w

        self.s, self.n_top, self.temperature = state, n_top_genes, temperature
        lay = w.Layout(width="auto")
        style = {"description_width": "110px"}
        self.group = w.Dropdown(
            options=[
                (f"{g.replace('|', ' · ')} ({state.group_sizes[g]} cells)", g) for g in state.groups
            ],
            description="group",
            style=style,
            layout=lay,
        )
        self.context = w.SelectMultiple(
            description="context cells", rows=8, style=style, layout=w.Layout(width="auto")
        )
        self.query = w.Dropdown(description="query cell", style=style, layout=lay)
        lo, hi = state.vocab.time_range
        self.timelapse = w.IntSlider(
            value=int(np.clip(120, lo, hi)),
            min=int(lo),
            max=int(hi),
            step=1,
            description="Δt (months)",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.predict = w.Button(
            description="Predict time",
            button_style="primary",
            tooltip="TimeBetweenCells: timelapse to the query",
        )
        self.generate = w.Button(
            description="Generate cell",
            button_style="success",
            tooltip="NextCell: a new cell Δt after the last context cell",
        )
        n_layers = int(state.model.config.num_hidden_layers)
        n_heads = int(state.model.config.num_attention_heads)
        heads = [("mean of all heads", "mean")] + [
            (f"layer {i} head {h}", f"L{i}H{h}") for i in range(n_layers) for h in range(n_heads)
        ]
        self.head = w.Dropdown(
            options=heads, value="mean", description="attention head", style=style, layout=lay
        )
        self.attention = w.Button(
            description="Show attention", tooltip="<eoq>'s attention to the query's top genes"
        )
        self.status = w.HTML()
        self.output = w.HTML(value="<i>Pick a group, context cells and a query.</i>")
        self.plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.group.observe(self._on_group, names="value")
        self.predict.on_click(self._guard(self._on_predict))
        self.generate.on_click(self._guard(self._on_generate))
        self.attention.on_click(self._guard(self._on_attention))
        self._on_group()
        title = w.HTML(
            f"<b>MaxToki explorer</b> — {state.adata.n_obs} cells, {len(state.groups)} groups"
        )
        self.box = w.VBox(
            [
                title,
                self.status,
                w.HBox(
                    [
                        w.VBox([self.group, self.context], layout=w.Layout(width="55%")),
                        w.VBox(
                            [self.query, self.timelapse, self.head], layout=w.Layout(width="45%")
                        ),
                    ]
                ),
                w.HBox([self.predict, self.generate, self.attention]),
                self.output,
                self.plot,
            ]
        )
        self.box.controls = {
            "group": self.group,
            "context": self.context,
            "query": self.query,
            "timelapse": self.timelapse,
            "predict": self.predict,
            "generate": self.generate,
            "head": self.head,
            "attention": self.attention,
            "output": self.output,
            "plot": self.plot,
            "status": self.status,
        }

    # --- callbacks ----------------------------------------------------------------------------
    def _guard(self, fn):
        from .._settings import settings

        def run(_button=None):
            # no progress bars for one prompt
            with settings.override(verbosity=min(settings.verbosity, 1)):
                try:
                    fn()
                except Exception as e:  # shown in the app: callbacks have no traceback in Jupyter
                    self.output.value = (
                        f"<span style='color:#b00020'><b>Error:</b> {html.escape(str(e))}</span>"
                    )

        return run

    def _on_group(self, _change=None) -> None:
        s = self.s
        rows = s.rows_of(self.group.value)
        self.context.options = [(s.describe(r), int(r)) for r in rows]
        # default: two cells of distinct donors at about 25% and 50% of the age range, and an
        # older query from another donor
        ages = s.times[rows]
        picks: list[int] = []
        for q in (0.25, 0.5):
            target = np.quantile(ages, q)
            for r in rows[np.argsort(np.abs(ages - target), kind="stable")]:
                if r in picks or (picks and s.times[r] == s.times[picks[-1]]):
                    continue
                if s.donors is not None and any(s.donors[r] == s.donors[p] for p in picks):
                    continue
                picks.append(int(r))
                break
        self.context.value = tuple(sorted(picks, key=lambda r: s.times[r]))
        self.query.options = [(s.describe(r), int(r)) for r in rows]
        used = {s.donors[p] for p in picks} if s.donors is not None else set()
        later = [
            int(r)
            for r in rows[::-1]
            if r not in picks and (s.donors is None or s.donors[r] not in used)
        ]
        self.query.value = later[len(later) // 4] if later else int(rows[-1])

    def _on_predict(self) -> None:
        s = self.s
        q = int(self.query.value)
        res = s.predict(self.context.value, q)
        err = res["predicted_age"] - res["true_age"]
        name = html.escape(str(s.adata.obs_names[q]))
        self.output.value = (
            f"<b>Predict time</b> (TimeBetweenCells) for query <code>{name}</code><table>"
            f"<tr><td>last context cell age</td><td>{res['last_context_age'] / 12:.1f} y</td></tr>"
            f"<tr><td>predicted Δt</td><td>{res['predicted_dt']:+.0f} months "
            f"(true {res['true_dt']:+.0f})</td></tr>"
            f"<tr><td>predicted age</td><td>{res['predicted_age'] / 12:.1f} y</td></tr>"
            f"<tr><td>true age</td><td>{res['true_age'] / 12:.1f} y</td></tr>"
            f"<tr><td>error</td><td>{err / 12:+.1f} y</td></tr></table>"
        )
        self.last = res

    def _on_generate(self) -> None:
        s = self.s
        dt = int(self.timelapse.value)
        ctx = s.check(self.context.value)
        genes = s.generate(ctx, dt, self.temperature)
        expected = float(s.times[ctx[-1]] + dt)
        near = s.nearest_real(self.group.value, expected, ctx)
        real_rank: dict[int, int] = {}
        if near is not None:
            real_rank = {int(t): i + 1 for i, t in enumerate(s.cells[near][1:-1])}
        top = genes[: self.n_top]
        rows = []
        for i, t in enumerate(top):
            mark = " ●" if s.in_set.get(int(t), False) else ""
            rr = real_rank.get(int(t))
            rows.append(
                f"<tr><td>{i + 1}</td><td>{html.escape(s.gene_name(t))}{mark}</td>"
                f"<td>{rr if rr is not None else '–'}</td></tr>"
            )
        shared = sum(int(t) in real_rank and real_rank[int(t)] <= len(top) for t in top)
        near_txt = (
            f"real cell <code>{html.escape(str(s.adata.obs_names[near]))}</code> "
            f"({s.times[near] / 12:.1f} y): {shared}/{len(top)} of these genes are among its "
            f"top {len(top)}"
            if near is not None
            else "no other real cell in this group"
        )
        legend = f" (● {html.escape(s.gene_set)})" if s.gene_set else ""
        self.output.value = (
            f"<b>Generate cell</b> (NextCell): Δt {dt:+d} months after the last context cell "
            f"→ expected age {expected / 12:.1f} y; {len(genes)} genes. Closest {near_txt}."
            f"<table><tr><th>rank</th><th>gene{legend}</th><th>rank in real cell</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        self.last_generated = genes

    def _on_attention(self) -> None:
        from matplotlib.figure import Figure

        s = self.s
        q = int(self.query.value)
        genes, rel = s.attention(self.context.value, q)
        head = self.head.value
        if head == "mean":
            values = rel.mean(axis=(0, 1))
        else:
            layer, h = (int(v) for v in head[1:].split("H"))
            values = rel[layer, h]
        n = min(self.n_top, len(genes))
        names = [s.gene_name(t) for t in genes[:n]]
        flag = np.array([s.in_set.get(int(t), False) for t in genes[:n]])
        fig = Figure(figsize=(5.0, 0.9 + 0.24 * n), layout="constrained")
        ax = fig.add_subplot()
        ax.barh(np.arange(n), values[:n], color=np.where(flag, "#d1495b", "#8d99ae"))
        ax.set_yticks(np.arange(n), names, fontsize="x-small")
        ax.invert_yaxis()
        ax.axvline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        ax.set_xlabel("attention from <eoq> (1 = uniform)")
        ax.set_title(
            f"query {s.adata.obs_names[q]}: top {n} genes by rank, "
            f"{'mean of heads' if head == 'mean' else head}",
            fontsize="small",
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        self.plot.value = buf.getvalue()
        self.plot.layout.display = ""
        all_flag = np.array([s.in_set.get(int(t), False) for t in genes])
        ratio = ""
        if s.gene_set and all_flag.any() and (~all_flag).any():
            r = values[all_flag].mean() / max(values[~all_flag].mean(), 1e-12)
            ratio = f"; {html.escape(s.gene_set)} genes get {r:.2f}× the attention of the others"
        self.output.value = (
            f"<b>Attention</b> of the prediction token to the {len(genes)} genes of query "
            f"<code>{html.escape(str(s.adata.obs_names[q]))}</code> "
            f"({'mean of all heads' if head == 'mean' else head}){ratio}. Top gene: "
            f"{html.escape(names[int(np.argmax(values[:n]))])}."
        )
