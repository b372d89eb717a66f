"""The process group of data-parallel training: several processes, one model, one batch.

Launched by ``torchrun``, every process (a *rank*) runs the same program; :func:`init`
joins them into a ``torch.distributed`` process group -- gloo for CPU tensors, and NCCL
for GPU tensors where CUDA exists -- and the helpers here are the few collective steps
the two-tower needs (:mod:`xsell.models.two_tower_training`): which contiguous share of a
batch or of a catalogue is this rank's, an all-gather of the shares that keeps autograd,
element-wise sums and rank 0's value of a number, the sharded catalogue encoding, and the
teardown. Outside ``torchrun`` (no process group) each is the one-process identity, so
code written with them runs unchanged, and bit for bit as before, in one process.

One node, two processes (``--standalone``: a local rendezvous on a free port)::

    torchrun --standalone --nproc_per_node 2 -m xsell.cli train-two-tower [data] --out DIR

Two nodes of two processes each: run on every node, with ``--node_rank`` 0 on the node
whose address ``HOST`` the others can reach, 1 on the other::

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 2 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m xsell.cli train-two-tower [data] --out DIR

(``torchrun`` is ``python -m torch.distributed.run``; it sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and the rendezvous address that :func:`init` reads. Every node needs the
data and the encoder; rank 0 writes ``DIR``.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from xsell.text import TextEncoder


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting
    ``WORLD_SIZE``) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(timeout_s: float = 600.0) -> bool:
    """Join the process group ``torchrun`` set up; nothing outside ``torchrun``.

    The backend is gloo on a CPU-only machine; where CUDA is available it is
    ``"cpu:gloo,cuda:nccl"`` -- NCCL for tensors on a GPU (each rank's is ``LOCAL_RANK``),
    gloo for CPU tensors, which is where the two-tower trains.

    Parameters
    ----------
    timeout_s : float
        How long a collective waits for the other ranks before failing.

    Returns
    -------
    bool
        Whether this process is one of several (a process group exists).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched():
        return False
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return True


def shutdown(wait: bool = True) -> None:
    """Leave the process group; nothing outside one.

    ``wait``: first wait at a barrier until every rank is done (so that rank 0 can still
    be writing when the others finish). A rank leaving on an error does not wait: the
    others may be inside another collective, and ``torchrun`` stops them.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        _GROUPS.clear()
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the group (1 outside ``torchrun``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside ``torchrun``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def backend() -> str | None:
    """The group's backend (e.g. ``"gloo"``), ``None`` outside ``torchrun``."""
    return str(dist.get_backend()) if world_size() > 1 else None


def shares(n: int, world: int | None = None) -> np.ndarray:
    """Bounds of ``world`` contiguous, near-equal shares of ``n`` rows.

    Share ``r`` is rows ``bounds[r]:bounds[r + 1]``; sizes differ by at most one, larger
    first (as :func:`numpy.array_split`), and together they are the ``n`` rows in order.
    """
    world = world_size() if world is None else world
    sizes = np.full(world, n // world, dtype=np.int64)
    sizes[:n % world] += 1
    return np.r_[0, np.cumsum(sizes)]


def my_share(n: int) -> slice:
    """This rank's rows of :func:`shares` of ``n`` (all of them outside ``torchrun``)."""
    bounds, r = shares(n), rank()
    return slice(int(bounds[r]), int(bounds[r + 1]))


_GROUPS: dict = {}  # the gathers' own process group, per default group


def _gather_group():
    """A second group over the same ranks, for :func:`gather_rows`: its backward runs
    inside ``loss.backward()`` while DDP all-reduces gradient buckets, and two streams of
    collectives on one group must be issued in the same order on every rank."""
    world = dist.group.WORLD
    if world not in _GROUPS:  # every rank reaches its first gather together
        _GROUPS.clear()
        _GROUPS[world] = dist.new_group()
    return _GROUPS[world]


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks of unequal sizes whose backward sends each rank the
    gradient of its own block, summed over the ranks whose losses read it."""

    @staticmethod
    def forward(ctx, block: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        # Collectives move equal-sized tensors: pad every block to the largest, trim after.
        longest, r = max(sizes), rank()
        padded = block.new_zeros((longest, *block.shape[1:]))
        padded[:len(block)] = block
        pieces = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(pieces, padded.contiguous(), group=_gather_group())
        ctx.sizes, ctx.start = sizes, sum(sizes[:r])
        return torch.cat([p[:s] for p, s in zip(pieces, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Every rank's loss may read every block: the gradient of a block is the sum of
        # theirs. An all-reduce (not a reduce-scatter) works on every backend, and one
        # batch of item vectors is small.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=_gather_group())
        return grad[ctx.start:ctx.start + ctx.sizes[rank()]], None


def gather_rows(block: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Every rank's block of rows, concatenated in rank order, on every rank.

    Keeps autograd: a loss computed from the result sends gradients back to the rank
    that computed each block (the other ranks' contributions summed in), which is what
    makes a loss over the whole batch exact when each rank computed only its share.

    Parameters
    ----------
    block : torch.Tensor
        This rank's rows, ``(sizes[rank], ...)``.
    sizes : sequence of int
        Rows of every rank's block (each rank knows them: e.g. from :func:`shares`).

    Returns
    -------
    torch.Tensor
        ``(sum(sizes), ...)``; ``block`` itself outside ``torchrun``.
    """
    sizes = tuple(int(s) for s in sizes)
    if world_size() == 1:
        return block
    if len(sizes) != world_size() or len(block) != sizes[rank()]:
        raise ValueError(f"rank {rank()} holds {len(block)} rows; sizes {sizes} are for "
                         f"{world_size()} ranks")
    return _GatherRows.apply(block, sizes)


def sum_over_ranks(values: Sequence[float]) -> np.ndarray:
    """Element-wise sum of ``values`` over the ranks (float64; itself outside ``torchrun``)."""
    out = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if world_size() > 1:
        dist.all_reduce(out)
    return out.numpy()


def from_rank0(value: float) -> float:
    """Rank 0's ``value`` on every rank, so that every rank takes the same decision."""
    if world_size() == 1:
        return value
    out = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(out, src=0)
    return float(out.item())


def encode_texts(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """``encoder.encode(texts)``, each rank encoding its share (:func:`my_share`).

    The shares are gathered into the whole table on every rank. Ranks read the
    embedding cache but do not write it (``store=False``): ``encode`` holds the cache's
    lock while it encodes, so ranks writing would take turns, encoding one after the
    other. Rank 0 then stores the vectors the cache lacked, once.

    Parameters
    ----------
    encoder : xsell.text.TextEncoder
        The sentence encoder (and its cache).
    texts : sequence of str
        What to embed.

    Returns
    -------
    numpy.ndarray
        ``(len(texts), dim)`` float32, the rows of ``encoder.encode(texts)`` (to float
        rounding: a share is padded in batches of its own).
    """
    if world_size() == 1:
        return encoder.encode(texts)
    texts = [str(t) for t in texts]
    mine = encoder.encode(texts[my_share(len(texts))], store=False)
    block = torch.from_numpy(np.ascontiguousarray(mine))
    table = gather_rows(block, np.diff(shares(len(texts)))).numpy()
    if rank() == 0 and encoder.cache is not None:
        _, missing = encoder.cache.get(texts)
        first = {texts[i]: i for i in reversed(missing)}  # each missing text once
        if first:
            encoder.cache.put(list(first), table[list(first.values())])
    return table
