"""Train on every core of a CPU as DDP ranks of one thread each, started from a notebook.

On a CPU a small model's step is many small kernels; torch's threads split each one and wait on
each other, while separate processes (one thread each, gradients all-reduced over gloo) keep
more of every core busy: 1.3–1.7× one core on 2 cores, vs 1.4–1.5× for 2 threads (``python -m
benchmarks.training_throughput``). Weights travel to and from the ranks as safetensors.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import tempfile
import time
import traceback
from multiprocessing import connection
from pathlib import Path

import pandas as pd
from torch import nn

from ._config import TrainConfig


def fit_on_cpu_ranks(
    model: nn.Module, train_dataset, eval_dataset, config: TrainConfig, *, vocab, processes: int
) -> pd.DataFrame:
    """Train ``model`` in ``processes`` spawned CPU ranks (DDP over gloo, one thread each).

    Every rank builds the model from its saved weights, runs :class:`~maxtoki.train.Trainer` on
    its share of each global batch (the same examples per optimizer step as one process), and
    rank 0 writes the trained weights and the history back; the weights are loaded into
    ``model`` in place. Rank 0's logs and progress bar go to the terminal that started Python
    (in Jupyter: the server's console).

    Parameters
    ----------
    model
        A :class:`~maxtoki.models.MaxToki` (with ``save_pretrained``/``from_pretrained``).
    train_dataset, eval_dataset, config, vocab
        As for :class:`~maxtoki.train.Trainer`; the datasets are copied into every rank.
    processes
        Number of ranks (at least 2).

    Returns
    -------
    The training history of rank 0, as :meth:`~maxtoki.train.Trainer.fit` returns it.
    """
    import torch.multiprocessing as mp

    from .._settings import settings

    if settings.resolve_device(config.device) != "cpu":
        raise ValueError(
            f"processes > 1 trains CPU ranks, but the device is {config.device!r}; pass "
            "device='cpu', or use `torchrun … maxtoki train` for several GPUs"
        )
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        raise ValueError(
            "this process is already a torchrun rank; processes > 1 starts ranks itself, so "
            "pass processes=1 under torchrun"
        )
    if config.global_batch_size % (config.micro_batch_size * processes):
        raise ValueError(
            f"global_batch_size ({config.global_batch_size}) must be a multiple of "
            f"micro_batch_size × processes ({config.micro_batch_size} × {processes})"
        )
    with tempfile.TemporaryDirectory(prefix="maxtoki-ranks-") as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder / "start")
        options = {"verbosity": settings.verbosity, "progress": settings.progress}
        # the data go to the ranks through a queue, not as spawn's arguments: a rank that died
        # before reading those would leave this process blocked on spawn's pipe for ever
        inbox = mp.get_context("spawn").Queue()
        inbox.cancel_join_thread()  # nor may data left unread hold this process at its exit
        for _ in range(processes):
            inbox.put((train_dataset, eval_dataset, config, vocab, options))
        ranks = mp.start_processes(
            _rank_main,
            args=(processes, _free_port(), folder, inbox),
            nprocs=processes,
            join=False,
            start_method="spawn",  # a fresh interpreter: safe beside the parent's threads
        )  # fmt: skip
        try:
            _wait(ranks.processes, folder)
        except BaseException as error:  # an error or an interrupt (Jupyter's stop button)
            _end(ranks.processes)
            first = _first_failure(folder)
            if first is None or not isinstance(error, Exception):
                raise
            # the others then fail in their collectives ("connection closed by peer")
            rank, trace = first
            message = f"training failed on rank {rank} (the first to fail):\n{trace}"
            raise RuntimeError(message) from None
        finally:
            inbox.close()
        trained = type(model).from_pretrained(folder / "trained")
        model.load_state_dict(trained.state_dict())
        return pd.read_json(folder / "history.json", orient="split")


def _free_port() -> int:
    """A free TCP port on this machine for the ranks' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(processes, folder: Path, grace: float = 60.0) -> None:
    """Wait for the ranks to exit, raising if one ends before it finished its work.

    A rank marks itself finished in ``folder`` after its last collective; after that, gloo's
    teardown may abort it (``terminate called without an active exception``) or hang
    (pytorch/pytorch#75097) without harming the result, so such an exit is not a failure and
    ranks still alive ``grace`` seconds after all have finished are ended. (torch's own
    ``ProcessContext.join`` would end the others at the first non-zero exit.)
    """
    finished = None
    while True:
        for rank, process in enumerate(processes):
            code = process.exitcode
            if code not in (None, 0) and not _finished(folder, rank).exists():
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                raise RuntimeError(f"rank {rank} ended with {how} before it finished its work")
        alive = [process for process in processes if process.exitcode is None]
        if not alive:
            return
        if finished is None and all(_finished(folder, r).exists() for r in range(len(processes))):
            finished = time.monotonic()
        if finished is not None and time.monotonic() - finished > grace:
            _end(processes)
            return
        connection.wait([process.sentinel for process in alive], timeout=1)


def _finished(folder: Path, rank: int) -> Path:
    """The file a rank writes into ``folder`` once its work is done."""
    return folder / f"finished_rank{rank}"


def _end(processes) -> None:
    """Terminate the processes still alive and reap them all."""
    for process in processes:
        if process.is_alive():
            process.terminate()
        process.join()


def _first_failure(folder: Path) -> tuple[int, str] | None:
    """The rank that failed first and its traceback, from the ranks' error files."""
    failures = []
    for path in folder.glob("error_rank*.txt"):
        when, _, trace = path.read_text().partition("\n")
        failures.append((float(when), int(path.stem.removeprefix("error_rank")), trace))
    return min(failures)[1:] if failures else None


def _rank_main(rank: int, world: int, port: int, folder: Path, inbox) -> None:
    """One rank: the group from the environment, data from ``inbox``, model from ``folder``, fit.

    Rank 0 writes the weights and the history into ``folder``; a rank that fails writes its
    traceback and the time there first, so the parent can name the rank that failed first.
    """
    import torch

    from .._settings import settings
    from ..models import MaxToki
    from ._distributed import DistInfo, destroy_distributed, init_distributed
    from ._trainer import Trainer

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    info = DistInfo()
    try:
        train_dataset, eval_dataset, config, vocab, options = inbox.get()
        settings.verbosity, settings.progress = options["verbosity"], options["progress"]
        # a peer that never answers fails the run in minutes, not after torch's default 30
        info = init_distributed("cpu", timeout=datetime.timedelta(minutes=10))
        trainer = Trainer(
            MaxToki.from_pretrained(folder / "start"), train_dataset, eval_dataset, config,
            vocab=vocab,
        )  # fmt: skip
        history = trainer.fit()  # joins the group above
        trainer.save_model(folder / "trained")  # ends with a barrier: no collective follows
        if trainer.info.is_main:
            history.to_json(folder / "history.json", orient="split")
        _finished(folder, rank).touch()
    except Exception:  # before the group ends: the others fail after this one
        (folder / f"error_rank{rank}.txt").write_text(f"{time.time()}\n{traceback.format_exc()}")
        raise
    finally:
        destroy_distributed(info)
