"""Passes: how many datapoints and particles an estimator takes at once, and in what order.

The estimators of log p(x) walk the data in passes of ``batch_size`` datapoints and
``chunk_size`` particles (:func:`pass_shape`: small passes on the CPU, where they stay
in cache, large ones on a GPU, capped by a memory budget). :func:`per_pass` runs a
function on every pass, each with random numbers that depend only on the seed and the
pass's index, and shares the passes among the processes of a ``torch.distributed``
group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pyrovae.data.batches import Batch, Data
from pyrovae.errors import Param, PyrovaeError
from pyrovae.inference.processes import collective_device, gather, processes
from pyrovae.inference.rng import drawing_devices, seeded
from pyrovae.inference.sites import sample_sites
from pyrovae.inference.traces import probe

#: How many (datapoint, particle) pairs a pass holds on the CPU. Passes this small keep
#: their temporaries in cache and in reused heap memory, which measured about 1.7x
#: faster than one large pass for the MNIST VAE.
ROWS_PER_PASS = 4096
#: The same on a GPU, where larger passes keep the device busy.
ROWS_PER_PASS_CUDA = 1 << 17


#: Bytes per float number, times the temporaries that the log-densities and the
#: networks' activations need beside each number a site holds. A deliberately high
#: estimate, measured at 4 to 6 for the MNIST VAE (benchmarks/marginal_vs_pytorch.py).
BYTES_PER_NUMBER = 4 * 8

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_bytes(size: int | str) -> int:
    """``1000000``, ``"512MB"``, ``"1.5GiB"``, ... as a number of bytes."""
    if isinstance(size, int):
        value = size
    else:
        text = str(size).strip().lower().replace(" ", "")
        number = text.rstrip("kmgib")
        try:
            value = int(float(number) * _UNITS[text[len(number) :]])
        except (ValueError, KeyError):
            raise PyrovaeError(
                f"cannot read memory size {size!r}; write e.g. 512MB, 2GiB or a number of bytes"
            ) from None
    if value < 1:
        raise PyrovaeError(
            Param("memory_budget"), f" must be a positive memory size, got {size!r}"
        )
    return value


def _numbers(obj: Any, depth: int = 0) -> int:
    """How many numbers the tensors of a distribution (and its parts) hold."""
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if depth > 3 or not hasattr(obj, "__dict__"):
        return 0
    return sum(
        _numbers(v, depth + 1)
        for k, v in vars(obj).items()
        if isinstance(v, torch.Tensor | torch.distributions.Distribution)
        and not k.startswith("_")
        or k == "base_dist"
    )


def bytes_per_row(model: Callable, guide: Callable, x: Any, args: tuple, kwargs: dict) -> int:
    """Estimated memory of one (datapoint, particle) pair in a pass, from one probe trace."""
    batch = x if isinstance(x, Batch) else Batch((x,))
    one = batch.index(slice(0, 1))
    model_trace, guide_trace = probe(model, guide, *one.args, *args, **one.kwargs, **kwargs)
    numbers = sum(
        site["value"].numel() + _numbers(site["fn"])
        for trace in (model_trace, guide_trace)
        for site in sample_sites(trace)
    )
    return max(1, numbers) * BYTES_PER_NUMBER


@dataclass(frozen=True)
class Passes:
    """How an estimator walks the data: datapoints and particles per pass, processes.

    ``batch_size`` datapoints per pass, ``chunk_size`` particles (None: the default for
    the device), both capped by ``memory_budget``; ``distributed`` as for
    :func:`~pyrovae.inference.processes.processes`.
    """

    batch_size: int = 100
    chunk_size: int | None = None
    memory_budget: int | str | None = None
    distributed: bool | None = None


def pass_shape(
    model: Callable,
    guide: Callable,
    data: Any,
    args: tuple,
    kwargs: dict,
    batch_size: int,
    chunk_size: int | None,
    memory_budget: int | str | None,
) -> tuple[int, int]:
    """Datapoints and particles per pass: the defaults, capped by the memory budget.

    A pass holds about :data:`ROWS_PER_PASS` (datapoint, particle) pairs on the CPU and
    :data:`ROWS_PER_PASS_CUDA` on a GPU, unless ``chunk_size`` says otherwise; a
    ``memory_budget`` caps the pairs per pass at what the budget holds, estimated from
    the numbers one pair's sites produce (:func:`bytes_per_row`). ``data`` is a tensor
    or a :class:`~pyrovae.data.batches.Batch` of the data (or of a representative part).
    """
    batch = data if isinstance(data, Batch) else Batch((data,))
    rows = ROWS_PER_PASS_CUDA if batch.first.is_cuda else ROWS_PER_PASS
    cap = None
    if memory_budget is not None:
        per_row = bytes_per_row(model, guide, batch, args, kwargs)
        cap = max(1, parse_bytes(memory_budget) // per_row)
        rows = min(rows, cap)
    batch_size = min(batch_size, len(batch), rows if cap is not None else batch_size)
    chunk = chunk_size or max(1, rows // batch_size)
    if cap is not None:
        chunk = min(chunk, max(1, cap // batch_size))
    return batch_size, chunk


def chunks(n: int, size: int | None):
    """Slices covering ``range(n)`` in pieces of ``size`` (all at once for None)."""
    size = n if size is None else max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def per_pass(
    data: Data,
    batch_size: int,
    run: Callable[[Batch], tuple[torch.Tensor, ...]],
    distributed: bool | None = None,
) -> tuple[torch.Tensor, ...]:
    """``run`` on every pass of ``batch_size`` datapoints, each result concatenated in order.

    ``run`` returns a tuple of per-datapoint tensors, shape ``(B, ...)``.

    Random numbers: pass 0 draws from the caller's random stream as it stands (so data
    that fit in one pass get what they always got, the draws of a training loss from
    the same seed included), and pass i > 0 from generators seeded with ``base + i``,
    where ``base`` is read from the caller's stream without moving it on. A pass's
    numbers thus depend on the seed and its index only, neither on the passes before
    it nor on the process that runs it: ``pyro.set_rng_seed`` before the call fixes
    them all. In a process group, the stream is rank 0's (which runs pass 0 and sends
    ``base`` to the others).

    Processes: in a process group (see :func:`processes`) of P processes, process r
    runs passes r, r + P, r + 2P, ... (the passes are the same whatever P), and every
    process returns every datapoint's values, gathered in order: what one process gives.
    """
    rank, size = processes(distributed)
    with torch.random.fork_rng(devices=[]):
        base = int(torch.randint(0, 2**62, ()))
    device: torch.device | None = None
    mine: list[tuple[int, tuple[torch.Tensor, ...]]] = []
    for i, batch in enumerate(data.passes(batch_size)):
        if i == 0:  # every process sees pass 0
            device = batch.first.device
            if size > 1:
                box = [base]
                with collective_device(device):
                    torch.distributed.broadcast_object_list(box, src=0)
                base = box[0]
        if i % size != rank:
            continue
        if i == 0:
            out = tuple(run(batch))
        else:
            with seeded(base + i, drawing_devices(batch.tensors())):
                out = tuple(run(batch))
        device = out[0].device if out else device
        mine.append((i, out))
    parts = gather(mine, device) if size > 1 else [out for _, out in mine]
    return tuple(torch.cat(ts) for ts in zip(*parts, strict=True))
