"""The one optimisation loop every trainer (DPR, extractive reader) runs: AdamW with linear
warm-up and decay, gradient accumulation, clipping over the trained parameters only, a thread
count, progress, and a resumable state (weights, optimizer, scheduler, step, RNG) saved atomically.

The data order is a pure function of (seed, epoch, step), so a run stopped at step s and resumed
replays exactly the batches an uninterrupted run would have seen. With item lengths given,
batches are grouped by length (shuffled chunks sorted by length, then the batches shuffled), so a
batch of short items is padded only to its own longest item.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OdqaBenchError
from ..perfstats import torch_threads
from ..progress import progress_enabled
from .checkpoint import load_train_state, save_train_state

if TYPE_CHECKING:
    import torch

__all__ = ["Schedule", "TrainOutcome", "plan_steps", "batch_at", "epoch_batches", "deterministic", "make_optimizer",
           "optimizer_step", "train_steps", "freeze_word_embeddings", "freeze_lower_layers", "GROUP_CHUNK"]

log = logging.getLogger(__name__)

GROUP_CHUNK = 50  # batches per length-sorted chunk: long enough to group lengths, short enough to stay random


@dataclass(frozen=True)
class Schedule:
    """The optimisation settings every trainer shares; each trainer builds one from its config."""

    lr: float
    batch_size: int
    epochs: int = 1
    max_steps: int | None = None
    warmup: float = 0.0
    weight_decay: float = 0.0
    grad_accum: int = 1
    max_grad_norm: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    save_every: int = 50
    autocast: str | None = None  # "bfloat16" / "float16": forward and loss under torch.autocast


AUTOCAST_DTYPES = ("bfloat16", "float16")


@dataclass
class TrainOutcome:
    finished: bool
    step: int
    total_steps: int
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0


def plan_steps(n_items: int, schedule: Schedule) -> tuple[int, int]:
    """(micro-batches per epoch, total optimizer steps); a short last batch is dropped."""
    per_epoch = max(1, n_items // schedule.batch_size)
    if schedule.max_steps is not None:
        return per_epoch, schedule.max_steps
    return per_epoch, max(1, (schedule.epochs * per_epoch) // schedule.grad_accum)


def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
    """The micro-batches of one epoch: a permutation seeded by (seed, epoch) cut into batches;
    with ``lengths``, each chunk of ``GROUP_CHUNK`` batches is sorted by length (longest first)
    before cutting and the batches are then shuffled with (seed, epoch, 1)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n_items)
    per_epoch = max(1, n_items // batch_size)
    if lengths is not None:
        # the items left out of this epoch are the permutation's tail, chosen before sorting
        lens, perm = np.asarray(lengths), perm[: per_epoch * batch_size]
        chunk = GROUP_CHUNK * batch_size
        perm = np.concatenate([c[np.argsort(-lens[c], kind="stable")] for c in np.split(perm, range(chunk, len(perm), chunk))])
    batches = [perm[p * batch_size : (p + 1) * batch_size] for p in range(per_epoch)]
    if lengths is not None:
        order = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def batch_at(micro: int, n_items: int, per_epoch: int, batch_size: int, seed: int) -> np.ndarray:
    """Item indices of micro-batch ``micro`` without length grouping."""
    epoch, pos = divmod(micro, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n_items)
    return perm[pos * batch_size : (pos + 1) * batch_size]


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block, then the caller's setting."""
    import torch

    was, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def freeze_word_embeddings(model: Any) -> int:
    """Stop training the input word-embedding matrix (most of a multilingual model's weights, and
    the optimizer's largest cost); returns how many parameters it froze."""
    emb = model.get_input_embeddings().weight
    emb.requires_grad_(False)
    return int(emb.numel())


def freeze_lower_layers(model: Any, n: int) -> int:
    """Stop training the embeddings and the ``n`` lowest encoder layers of a BERT-style model, so
    the backward pass ends at layer ``n`` instead of running through the whole encoder; returns
    how many parameters it froze."""
    if n <= 0:
        return 0
    encoder = model.base_model
    layers = encoder.encoder.layer
    if n > len(layers):
        raise OdqaBenchError(f"cannot freeze {n} layers of a {len(layers)}-layer encoder")
    frozen = 0
    for module in (encoder.embeddings, *layers[:n]):
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen


def _lr_lambda(warm: int, total: int) -> Callable[[int], float]:
    def f(s: int) -> float:
        if s < warm:
            return (s + 1) / (warm + 1)
        return max(0.0, (total - s) / max(1, total - warm))

    return f


def make_optimizer(model: Any, schedule: Schedule, total: int) -> tuple[list[Any], Any, Any]:
    """(trained parameters, AdamW, linear warm-up/decay scheduler) over ``total`` steps."""
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    sched = LambdaLR(opt, _lr_lambda(int(round(schedule.warmup * total)), total))
    return params, opt, sched


def autocast_context(device: str, dtype: str | None) -> Any:
    """``torch.autocast`` on ``device``'s type in ``dtype`` (None: a no-op context). Weights,
    gradients and the optimizer stay float32; matmuls run in ``dtype``."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in AUTOCAST_DTYPES:
        raise OdqaBenchError(f"autocast must be one of {', '.join(AUTOCAST_DTYPES)} or None, got {dtype!r}")
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, dtype))


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (any CUDA device here; on the CPU,
    oneDNN's AVX512-BF16 or AMX kernels)."""
    import torch

    if device.startswith("cuda"):
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warn_emulated_bfloat16(device: str, dtype: str | None) -> None:
    """Warn when bfloat16 autocast would run emulated: on a CPU without bfloat16 instructions it
    is many times slower than float32, not faster."""
    if dtype == "bfloat16" and not native_bfloat16(device):
        import torch

        log.warning("autocast bfloat16 on a CPU without bfloat16 instructions (%s): steps run emulated, much slower "
                    "than float32; leave autocast unset on this machine", torch.backends.cpu.get_cpu_capability())


def optimizer_step(params: list[Any], opt: Any, sched: Any, micro_batches: Sequence[np.ndarray],
                   loss_of: Callable[[np.ndarray], torch.Tensor], max_grad_norm: float,
                   autocast: str | None = None, device: str = "cpu") -> float:
    """One optimizer step over ``micro_batches`` (gradients accumulated, each loss divided by
    their count; forward and loss under ``autocast`` on ``device`` when given); returns the
    summed scaled loss."""
    import torch

    opt.zero_grad(set_to_none=True)
    acc = 0.0
    for idx in micro_batches:
        with autocast_context(device, autocast):
            loss = loss_of(idx) / len(micro_batches)
        loss.backward()
        acc += float(loss.detach())
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    sched.step()
    return acc


def train_steps(model: Any, n_items: int, loss_of: Callable[[np.ndarray], torch.Tensor], schedule: Schedule,
                state_path: Path, key: str, *, lengths: Sequence[int] | np.ndarray | None = None,
                stop_after: int | None = None, progress: bool | None = None, desc: str = "train",
                on_step: Callable[[int, Any, list[float]], None] | None = None) -> TrainOutcome:
    """Run (or resume) optimisation of ``model`` over ``n_items`` items, ``loss_of(indices)``
    giving a micro-batch's loss. Saves the state every ``schedule.save_every`` steps and when
    ``stop_after`` steps are reached before the end (an interruption); ``on_step(step, model,
    losses)`` runs after each step (learning curves), and training mode is restored after it."""
    import torch
    from tqdm.auto import tqdm

    per_epoch, total = plan_steps(n_items, schedule)
    warn_emulated_bfloat16(schedule.device, schedule.autocast)
    model.to(schedule.device)
    params, opt, sched = make_optimizer(model, schedule, total)
    torch.manual_seed(schedule.seed)
    restored = load_train_state(state_path, key, model, opt, sched)
    start, losses = restored if restored else (0, [])
    if start:
        log.info("resuming %s training at step %d of %d from %s", desc, start, total, state_path)
    epochs: dict[int, list[np.ndarray]] = {}

    def micro(m: int) -> np.ndarray:
        if lengths is None:
            return batch_at(m, n_items, per_epoch, schedule.batch_size, schedule.seed)
        epoch, pos = divmod(m, per_epoch)
        if epoch not in epochs:
            epochs.clear()
            epochs[epoch] = epoch_batches(n_items, schedule.batch_size, schedule.seed, epoch, lengths)
        return epochs[epoch][pos]

    show = progress_enabled() if progress is None else progress
    model.train()
    bar = tqdm(total=total, initial=start, desc=desc, unit="step", disable=not show, leave=False)
    step = start
    try:
        with deterministic(), torch_threads(schedule.threads):
            while step < total:
                if stop_after is not None and step >= stop_after:
                    save_train_state(state_path, key, step, model, opt, sched, losses)
                    return TrainOutcome(False, step, total, losses, start)
                batches = [micro(step * schedule.grad_accum + a) for a in range(schedule.grad_accum)]
                losses.append(optimizer_step(params, opt, sched, batches, loss_of, schedule.max_grad_norm,
                                             schedule.autocast, schedule.device))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if on_step is not None:
                    on_step(step, model, losses)
                    model.train()
                if step % schedule.save_every == 0 and step < total:
                    save_train_state(state_path, key, step, model, opt, sched, losses)
    finally:
        bar.close()
    model.eval()
    return TrainOutcome(True, step, total, losses, start)
