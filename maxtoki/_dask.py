"""Shards as tasks on a dask.distributed cluster (private; used by tokenize_corpus and predict).

One rule for every caller: ``client=None`` runs locally; a :class:`distributed.Client` runs the
shards on its cluster; ``client="active"`` takes the client of the current context
(:func:`distributed.get_client`). Workers write each shard atomically (a temporary name, then a
rename); only the driver records finished shards, in the order their tasks complete, so a worker
that dies mid-task loses nothing: dask runs its task again elsewhere and the rewrite is
idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ._optional import import_optional

CLIENT_RULE = (
    "client must be None (run here), a distributed.Client, or 'active' (the client of the "
    "current context)"
)


def resolve_client(client: Any, *, purpose: str) -> Any:
    """The :class:`distributed.Client` that ``client`` names, or ``None`` to run locally.

    Parameters
    ----------
    client
        ``None``, a :class:`distributed.Client` or ``'active'``.
    purpose
        What asks (e.g. ``'mt.pp.tokenize_corpus(client=…)'``); starts the install hint.

    Returns
    -------
    The client, or ``None``.
    """
    if client is None:
        return None
    if isinstance(client, str) and client != "active":
        raise ValueError(f"{CLIENT_RULE}, got the string {client!r}")
    distributed = import_optional("distributed", extra="dask", purpose=purpose)
    if isinstance(client, str):
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError(
                "client='active' but no dask client is active; create one first "
                "(distributed.Client(...)) or pass it as client="
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"{CLIENT_RULE}, got {type(client).__name__}")
    return client


def map_shards(
    client: Any,
    fn: Callable[..., Any],
    items: Iterable[Any],
    *,
    on_done: Callable[[Any, Any], None],
    shared: dict[str, Any] | None = None,
    name: str = "maxtoki-shard",
) -> int:
    """Run ``fn(item, **shared)`` for every item as a task; ``on_done(item, result)`` here.

    ``fn`` must be importable by the workers (a module-level function of ``maxtoki``) and write
    its output atomically, since a task whose worker dies is run again. ``shared`` values travel
    with every task (keep them small: paths, options), never as data held by one worker only,
    which a worker's death would lose. ``on_done`` runs on the driver as tasks finish (any
    order). If ``on_done`` or a task raises, the remaining tasks are cancelled and the error is
    re-raised.

    Parameters
    ----------
    client
        A :class:`distributed.Client` (see :func:`resolve_client`).
    fn
        The task.
    items
        One per task (small, picklable: e.g. a shard's file and rows).
    on_done
        Called with each item and its task's result, on the driver.
    shared
        Keyword arguments of every task.
    name
        Prefix of the task keys (shown on the dask dashboard).

    Returns
    -------
    The number of tasks run.
    """
    from distributed import as_completed

    items = list(items)
    if not items:
        return 0
    shared = dict(shared or {})
    run = uuid.uuid4().hex[:8]  # fresh keys: a cancelled run's tasks are never taken for these
    futures = {}
    for i, item in enumerate(items):
        fut = client.submit(fn, item, **shared, key=f"{name}-{run}-{i}", pure=False)
        futures[fut.key] = (fut, item)
    try:
        for fut in as_completed([f for f, _ in futures.values()]):
            on_done(futures[fut.key][1], fut.result())
    finally:
        client.cancel([f for f, _ in futures.values() if not f.done()])
    return len(items)
