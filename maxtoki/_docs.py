"""Shared docstring fragments, injected scanpy-style: ``@inject_docs`` fills ``{name}`` lines.

A public function writes ``{adata}`` (or another fragment name) on a line of its own inside the
Parameters section; :func:`inject_docs` replaces that line with the fragment, indented like the
placeholder. Only the names defined here are replaced, so other braces in a docstring (an
f-string in an example, a set) are left alone.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

FRAGMENTS: dict[str, str] = {
    "adata": """\
adata
    AnnData, or MuData whose modality ``mod`` is used.""",
    "adata_tokens": """\
adata
    AnnData (or MuData, see ``mod``) tokenized by :func:`maxtoki.pp.tokenize` with the model's
    vocabulary.""",
    "model": """\
model
    A :class:`~maxtoki.models.MaxToki` (from :meth:`~maxtoki.models.MaxToki.from_pretrained` or
    :func:`maxtoki.tl.train`).""",
    "temporal_model": """\
model
    A temporal (stage 2) :class:`~maxtoki.models.MaxToki`, whose vocabulary has time tokens.""",
    "vocab": """\
vocab
    The model's :class:`~maxtoki.pp.GeneVocab`. ``None`` (default) uses the vocabulary the model
    carries (``model.vocab``, saved and loaded with its weights); one passed here must agree with
    the model.""",
    "tokens_key": """\
tokens_key
    ``obsm`` key of the tokens: ``f'{key_added}_tokens'`` of :func:`maxtoki.pp.tokenize`
    (default ``'maxtoki_tokens'``); its record is ``uns[tokens_key]``.""",
    "key_added": """\
key_added
    Prefix of every slot written (default ``'maxtoki'``); see the Returns section and
    ``docs/slots.md``.""",
    "time_key": """\
time_key
    ``obs`` column with each cell's age (time) in months.""",
    "groupby": """\
groupby
    ``obs`` column(s) whose combination defines a trajectory's group (e.g. cell type and sex):
    context cells come from the query's group. ``None`` puts every cell in one group.""",
    "donor_key": """\
donor_key
    ``obs`` column of donors, in the query and the reference: context cells never come from the
    query's donor. ``None`` (or a column missing from either object) switches this off.""",
    "reference": """\
context
    AnnData (or MuData) of tokenized reference cells with known ages, from which contexts are
    drawn. ``None``: the cells of ``adata`` whose ``obs[reference_key]`` is in ``reference``.
reference_key, reference
    With ``context=None``: the ``obs`` column and the value(s) selecting the reference cells
    (e.g. the healthy controls). ``reference_key=None`` (or a missing column) uses every cell
    with a known age.""",
    "n_contexts": """\
n_contexts
    Trajectories drawn per query cell; their predictions are aggregated.
n_context_cells
    Reference cells per trajectory.""",
    "n_views": """\
n_views
    Views of each query cell (not in the official release): the cell, then copies with a fifth
    of its genes dropped at random, shown to its contexts in turn, so no model call is added
    (views beyond ``n_contexts`` go unused). ``1``: the cell alone, as the official release
    reads it. See docs/benchmarks.md.""",
    "max_genes": """\
max_genes
    Top-ranked genes kept per cell. ``None``: the ``max_genes_per_cell`` the model was trained
    with (``model.config.max_genes_per_cell``), else every gene up to the model's context.""",
    "batch_size": """\
batch_size
    Prompts (or cells) per forward pass; ``None`` uses ``mt.settings.batch_size``.""",
    "device": """\
device
    Torch device (``'cpu'``, ``'cuda'``, ``'cuda:1'``…); ``None`` uses ``mt.settings.device``
    (``'auto'``: CUDA when available).""",
    "random_state": """\
random_state
    Seed or :class:`numpy.random.Generator`; the same seed gives the same result.""",
    "mod": """\
mod
    Modality to use when the input is a MuData (written ``obs`` columns are mirrored to
    ``mdata.obs[f'{mod}:{key}']``, muon's convention).""",
    "copy": """\
copy
    Return a modified copy instead of writing into the input.""",
    "ax": """\
ax
    Axes to draw into; a new figure otherwise.""",
    "show": """\
show
    Show the figure; ``None`` shows it on interactive backends only.""",
    "save": """\
save
    Write the figure into ``mt.settings.figdir`` (as scanpy's ``save=``): ``True`` as
    ``<function name>.png``, or a file name whose suffix picks the format (``'age.pdf'``;
    ``.png`` when it has none). Written before the figure is shown.""",
}


def inject_docs(fn: F) -> F:
    """Replace each line that is only ``{name}`` (a fragment name) by that fragment."""
    doc = fn.__doc__
    if not doc:
        return fn
    lines = []
    for line in doc.splitlines():
        stripped = line.strip()
        name = stripped[1:-1] if stripped.startswith("{") and stripped.endswith("}") else None
        if name in FRAGMENTS:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(textwrap.indent(FRAGMENTS[name], indent))
        else:
            lines.append(line)
    fn.__doc__ = "\n".join(lines)
    return fn
