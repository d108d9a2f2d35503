"""The training loop: one function; batches are shuffled index slices, gathered on the device for resident
data or decoded by a DataLoader for a streamed image folder."""

from __future__ import annotations

import contextlib
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import nnspec
from nnspec.compiler.compile import compile_model
from nnspec.compiler.metrics import metric_mode
from nnspec.compiler.spec import Spec

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, snapshot
from .data import Normalizer, Prepared, Split, StreamedSplit, prepare_data
from .distributed import Dist, init_distributed, shutdown
from .files import atomic_write_json
from .metrics import compute_metrics, probabilities
from .rundir import create_run_dir, plot_confusion, plot_curves, spec_hash, write_metrics_csv
from .threads import set_training_threads
from .tracking import Tracking

CHECKPOINT_SECONDS = 30.0  # last.pt (and best.pt) at most this often while training; always at the end and on Ctrl-C


class TrainingInterrupted(Exception):
    """Ctrl-C during training; `epoch` is the last finished epoch (0: none)."""

    def __init__(self, run_dir: Path, epoch: int):
        super().__init__(f"interrupted after epoch {epoch}")
        self.run_dir, self.epoch = run_dir, epoch


@dataclass
class TrainResult:
    """What train() leaves behind."""

    run_dir: Path | None
    summary: dict
    model: torch.nn.Module
    data: Prepared
    history: list[dict]  # one row per epoch, as in metrics.csv


def resolve_device(name: str, d: Dist) -> torch.device:
    """auto -> cuda, then mps, then cpu; under torchrun each rank takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"training.device is '{name}' but CUDA is not available on this machine")
        if d.world > 1:
            name = f"cuda:{d.local_rank}"
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("training.device is 'mps' but MPS is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; optionally demand deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast where asked, else a no-op context."""
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor | Split | StreamedSplit, precision: str = "fp32",
                   batch: int = 1024) -> torch.Tensor:
    """Eval-mode outputs for x (a tensor, or a split's inputs), in float32."""
    was_training = model.training
    model.eval()
    chunks = (x[i : i + batch] for i in range(0, len(x), batch)) if isinstance(x, torch.Tensor) else x.inputs(batch)
    with autocast(x.device, precision):
        out = torch.cat([model(xb).float() for xb in chunks])
    model.train(was_training)
    return out


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of batch_size; a trailing single sample joins the previous batch
    (batch norm cannot train on one sample)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def weight_penalty(weights: list[torch.Tensor], l2: float, l1: float) -> torch.Tensor:
    """λ₂·Σθ² + λ₁·Σ|θ| over weight matrices and kernels (biases and norm parameters are 1-D and excluded)."""
    total = 0.0
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    return total


def evaluate_split(spec: Spec, model, loss_fn, split: Split | StreamedSplit, y_norm: Normalizer | None, precision: str) -> dict[str, float]:
    """Loss and task metrics on one split."""
    logits = predict_logits(model, split, precision)
    metrics = {"loss": float(loss_fn(logits, split.y))}
    metrics.update(compute_metrics(spec.task, logits, split.y, y_norm))
    return metrics


def _versions() -> dict:
    return {"nnspec": nnspec.__version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def train(spec: Spec, *, runs_dir: str | Path = "runs", device: str | None = None, resume: str | Path | None = None,
          on_epoch: Callable[[dict, int], None] | None = None, write: bool = True,
          on_note: Callable[[str], None] | None = None, tracking: Tracking | None = None) -> TrainResult:
    """Fit the spec's network on its data and write the run directory (rank 0 only under torchrun).
    `on_note` gets each line about the data (dropped rows, missing values and their fills) before training;
    `tracking` (runtime.tracking.open_tracking) gets the run's start, each epoch and the end; the caller closes it."""
    tr = spec.training
    d = init_distributed(device or tr.device)
    try:
        return _fit(spec, tr, d, runs_dir, device, resume, on_epoch, write, on_note, tracking if d.is_main else None)
    finally:
        shutdown(d)


def _fit(spec, tr, d: Dist, runs_dir, device, resume, on_epoch, write, on_note, tracking) -> TrainResult:
    dev = resolve_device(device or tr.device, d)
    threads = set_training_threads(tr.threads)
    seed_everything(tr.seed, tr.deterministic)
    data = prepare_data(spec, dev)
    data.raw.x = None  # the splits hold their own normalized copies: the raw table is not kept through training
    if on_note and d.is_main:
        for line in data.notes:
            on_note(line)
    net = compile_model(spec, data.raw).to(dev)
    model = net if d.world == 1 else torch.nn.parallel.DistributedDataParallel(net)
    loss_fn = tr.loss.build(data.train_targets, data.num_outputs).to(dev)
    optimizer = tr.optimizer.build(net.parameters())
    shard = len(data.train) // d.world if d.world > 1 else len(data.train)
    slices = batch_slices(shard, tr.batch_size)
    schedule = tr.scheduler.build(optimizer, len(slices), tr.epochs) if tr.scheduler else None
    augment = [a.build(spec.task, data.num_outputs) for a in tr.augmentation]
    scaler = torch.amp.GradScaler(dev.type, enabled=tr.precision == "fp16" and dev.type == "cuda")
    weights = [p for p in net.parameters() if p.dim() >= 2]
    monitor = tr.early_stopping.monitor if tr.early_stopping else ("val_loss" if data.validation is not None else None)
    min_delta = tr.early_stopping.min_delta if tr.early_stopping else 0.0
    better = (lambda a, b: a > b + min_delta) if monitor and metric_mode(monitor) == "max" else (lambda a, b: a < b - min_delta)

    history: list[dict] = []
    best_state = None  # the best weights of this session, in memory on every rank
    tracker = {"best_value": None, "best_epoch": 0, "bad_epochs": 0}
    start_epoch = 1
    if resume is not None:
        run_dir = Path(resume)
        # On the CPU: the RNG states must be CPU tensors (set_rng_state, .numpy()); the model's and the
        # optimizer's load_state_dict copy their tensors to the parameters' device themselves.
        state = load_checkpoint(run_dir / "last.pt", "cpu")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if schedule:
            schedule.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        history, tracker = list(state["history"]), dict(state["tracker"])
        start_epoch = state["epoch"] + 1
        if tr.early_stopping and tracker["bad_epochs"] >= tr.early_stopping.patience:
            start_epoch = tr.epochs + 1  # it had stopped early: resuming must not train (and overwrite last.pt) again
    else:
        run_dir = create_run_dir(runs_dir, spec, data.raw, data.parity_rows) if d.is_main and write else None
        run_dir = d.broadcast_object(run_dir)

    preprocessing = _preprocessing(data)
    if tracking:
        tracking.start(spec, run_dir, net, data.train)

    def checkpoint(epoch: int) -> dict:
        return {"epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict() if schedule else {}, "scaler": scaler.state_dict(), "rng": rng_state(),
                "history": history, "tracker": tracker, "preprocessing": preprocessing}

    saved = {"at": time.monotonic(), "best_epoch": tracker["best_epoch"], "pending": None}

    def save_checkpoints(state: dict) -> None:
        """last.pt from `state`, and best.pt when a better epoch came since the last save."""
        save_checkpoint(run_dir / "last.pt", state)
        if best_state is not None and tracker["best_epoch"] != saved["best_epoch"]:
            save_checkpoint(run_dir / "best.pt", {"epoch": tracker["best_epoch"], "model": best_state, "preprocessing": preprocessing})
        saved.update(at=time.monotonic(), best_epoch=tracker["best_epoch"], pending=None)

    amp = autocast(dev, tr.precision)
    reg = tr.regularization
    penalize = bool(reg.l2 or reg.l1)  # read once, not on every step
    batch_sizes = torch.tensor([sl.stop - sl.start for sl in slices], dtype=torch.float64, device=dev)
    epoch = finished = start_epoch - 1
    try:
        for epoch in range(start_epoch, tr.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            # Every rank draws the same permutation (seeded by epoch) and keeps its own stride of it.
            perm = (torch.randperm(len(data.train), generator=torch.Generator().manual_seed(tr.seed * 100_003 + epoch))
                    if tr.shuffle else torch.arange(len(data.train)))
            perm = perm[d.rank :: d.world][:shard]
            losses = []  # kept on the device: reading a loss every step would wait for the device
            for xb, yb in data.train.batches(perm, slices):
                for aug in augment:
                    xb, yb = aug(xb, yb)
                with amp:
                    loss = loss_fn(model(xb).float(), yb)
                losses.append(loss.detach())
                if penalize:
                    loss = loss + weight_penalty(weights, reg.l2, reg.l1)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if reg.grad_clip_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), reg.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                if schedule:
                    schedule.step_batch()

            loss_sum = float(torch.stack(losses).double() @ batch_sizes) if losses else 0.0  # float() waits for the device
            total, count = d.all_sum([loss_sum, float(shard)], dev)
            train_seconds = time.perf_counter() - t0  # the optimization alone, before evaluation
            row = {"epoch": epoch, "train_loss": total / count}
            # Ranks' batch-norm statistics differ (each saw its own batches): decide on rank 0's numbers everywhere,
            # or the ranks disagree on the lr and on when to stop, and one waits forever for the other. So only
            # rank 0 evaluates.
            if d.is_main:
                if tr.log_train_metrics:  # one more pass over the training split: only when asked
                    train_metrics = evaluate_split(spec, net, loss_fn, data.train, data.y_norm, tr.precision)
                    row.update({f"train_{k}": v for k, v in train_metrics.items() if k != "loss"})
                if data.validation is not None:
                    row.update({f"val_{k}": v for k, v in evaluate_split(spec, net, loss_fn, data.validation, data.y_norm, tr.precision).items()})
            row = d.broadcast_object(row)
            if schedule:
                schedule.step_epoch(row)
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["train_seconds"] = train_seconds
            row["seconds"] = time.perf_counter() - t0
            history.append(row)

            improved = False
            if monitor is not None:
                value = row[monitor]
                if tracker["best_value"] is None or better(value, tracker["best_value"]):
                    tracker.update(best_value=value, best_epoch=epoch, bad_epochs=0)
                    improved = True
                else:
                    tracker["bad_epochs"] += 1
            if improved:
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if run_dir is not None and d.is_main:
                write_metrics_csv(run_dir / "metrics.csv", history)
                # Writing last.pt every epoch costs more than a short epoch: it is written on a time budget, and
                # otherwise this epoch's state is kept in memory for the end of training or a Ctrl-C.
                if time.monotonic() - saved["at"] >= CHECKPOINT_SECONDS:
                    save_checkpoints(checkpoint(epoch))
                else:
                    saved["pending"] = snapshot(checkpoint(epoch))
            finished = epoch  # everything of this epoch is done (and in last.pt, or pending, when writing)
            if tracking:
                tracking.epoch(row)
            if on_epoch and d.is_main:
                on_epoch(row, tr.epochs)
            if tr.early_stopping and tracker["bad_epochs"] >= tr.early_stopping.patience:
                break
    except KeyboardInterrupt:
        if saved["pending"] is not None:
            save_checkpoints(saved["pending"])
        raise TrainingInterrupted(run_dir, finished) from None
    if saved["pending"] is not None:
        save_checkpoints(saved["pending"])

    stopped_early = len(history) < tr.epochs
    if tr.early_stopping and tr.early_stopping.restore_best and tracker["best_epoch"]:
        if best_state is not None:
            net.load_state_dict(best_state)
        else:  # the best epoch came before a resume; rank 0 wrote best.pt back then
            net.load_state_dict(load_checkpoint(run_dir / "best.pt", dev)["model"])

    summary = {
        "name": spec.name, "task": spec.task, "run_dir": str(run_dir) if run_dir else None,
        "epochs_run": len(history), "best_epoch": tracker["best_epoch"] or None, "stopped_early": stopped_early,
        "monitor": monitor, "seconds": round(sum(r["seconds"] for r in history), 3),
        "seed": tr.seed, "device": str(dev), "threads": threads, "world_size": d.world,
        "params": sum(p.numel() for p in net.parameters()),
        "validation": {k[4:]: v for k, v in history[-1].items() if k.startswith("val_")} if history else {},
        "test": {}, "splits": data.splits, "data_notes": data.notes, "spec_hash": spec_hash(spec), "versions": _versions(),
    }
    if tr.early_stopping and tr.early_stopping.restore_best and data.validation is not None:
        summary["validation"] = evaluate_split(spec, net, loss_fn, data.validation, data.y_norm, tr.precision)
    if data.test is not None:
        summary["test"] = evaluate_split(spec, net, loss_fn, data.test, data.y_norm, tr.precision)
    if run_dir is not None and d.is_main:
        atomic_write_json(run_dir / "summary.json", summary)
        _plots(spec, net, data, history, run_dir, tr.precision)
    if tracking:
        tracking.finish(summary)
    return TrainResult(run_dir, summary, net, data, history)


def _preprocessing(data: Prepared) -> dict:
    out = {"x": data.x_norm.state()}
    if data.imputer is not None:
        out["impute"] = data.imputer.state()
    if data.y_norm is not None:
        out["y"] = data.y_norm.state()
    return out


def _plots(spec: Spec, net, data: Prepared, history: list[dict], run_dir: Path, precision: str) -> None:
    metric = "accuracy" if spec.task != "regression" else "rmse"
    plot_curves(run_dir / "curves.png", history, metric)
    if spec.task != "regression":
        split, name = (data.test, "test") if data.test is not None else (data.validation, "validation")
        if split is not None:
            probs = probabilities(spec.task, predict_logits(net, split, precision))
            plot_confusion(run_dir / "confusion.png", split.y.view(-1).long().cpu().numpy(), probs.argmax(1).cpu().numpy(),
                           data.raw.labels, f"{spec.name}: {name} split")
