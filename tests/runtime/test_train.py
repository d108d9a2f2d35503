"""The training runtime (issue 3): optimizers, schedulers, losses, augmentation and regularization do
what they say; the loop is reproducible, resumable and stops early; every data source trains."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from nnspec.compiler.base import type_tag, union_members
from nnspec.compiler.compile import compile_model
from nnspec.compiler.losses import LossSpec
from nnspec.compiler.optimizers import OptimizerSpec
from nnspec.compiler.schedulers import SchedulerSpec
from nnspec.runtime.checkpoint import load_checkpoint
from nnspec.runtime.data import prepare_data
from nnspec.runtime.train import (TrainingInterrupted, batch_slices, predict_logits, seed_everything, train,
                                  weight_penalty)

# Schedules driven by hand below step a dummy optimizer that never steps itself.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")


def fit(spec, **kwargs):
    """train() on the CPU without a run directory (unless runs_dir is given); returns (result, per-epoch rows)."""
    rows = []
    kwargs.setdefault("write", "runs_dir" in kwargs or "resume" in kwargs)
    result = train(spec, device="cpu", on_epoch=lambda row, epochs: rows.append(dict(row)), **kwargs)
    return result, rows


def sgd_param(lr=1.0):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def tags(union) -> list[str]:
    """The `type:` values a spec union accepts."""
    return [type_tag(m) for m in union_members(union)]


def assert_table_covers(table: str, tested: set, union) -> None:
    """A union member without a case in `table` (or a case for no member) fails, naming the tags."""
    every = set(tags(union))
    assert tested == every, (f"{table}: no case for {sorted(every - tested)}; "
                             f"cases for types the union lacks: {sorted(tested - every)}")


# --- optimizers ---------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": ({"type": "adagrad", "lr": 0.1}, torch.optim.Adagrad, {"lr": 0.1}),
    "rmsprop": ({"type": "rmsprop", "lr": 0.01, "alpha": 0.9, "centered": True}, torch.optim.RMSprop, {"alpha": 0.9, "centered": True}),
    "adam": ({"type": "adam", "lr": 0.02, "betas": [0.8, 0.99], "amsgrad": True}, torch.optim.Adam, {"betas": (0.8, 0.99), "amsgrad": True}),
    "adamw": ({"type": "adamw", "lr": 0.02, "weight_decay": 0.05}, torch.optim.AdamW, {"weight_decay": 0.05}),
}


def test_every_optimizer_type_has_a_case():
    assert_table_covers("OPTIMIZERS", {config["type"] for config, _, _ in OPTIMIZERS.values()}, OptimizerSpec)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_its_torch_class_and_lowers_the_loss(h, tmp_path, name):
    config, cls, expected = OPTIMIZERS[name]
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 6, "optimizer": config}))
    built = spec.training.optimizer.build([torch.zeros(2, requires_grad=True)])
    assert type(built) is cls
    for key, value in expected.items():
        assert built.defaults[key] == value, key
    result, rows = fit(spec)
    assert len(rows) == 6
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert rows[-1]["val_accuracy"] > 0.6  # chance is 1/3


def test_adamw_decays_decoupled_from_the_gradient():
    # with a zero gradient, Adam's L2 term moves nothing after bias correction... AdamW shrinks θ by lr·wd
    from nnspec.compiler.optimizers import AdamwSpec

    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamwSpec(type="adamw", lr=0.1, weight_decay=0.5).build([p])
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))


# --- schedulers ---------------------------------------------------------------------------

def lrs_after_epochs(scheduler: dict, epochs: int, spe: int, lr: float = 1.0, metrics=None) -> list[float]:
    """The lr after each of `epochs` epochs of `spe` step_batch calls (index 0: before training)."""
    from nnspec.compiler.spec import TrainingSpec

    tr = TrainingSpec.model_validate({"epochs": epochs, "loss": {"type": "cross_entropy"}, "scheduler": scheduler})
    opt = sgd_param(lr)
    schedule = tr.scheduler.build(opt, spe, epochs)
    out = [opt.param_groups[0]["lr"]]
    for e in range(epochs):
        for _ in range(spe):
            schedule.step_batch()
        schedule.step_epoch(metrics[e] if metrics else {})
        out.append(opt.param_groups[0]["lr"])
    return out


def test_step_scheduler_multiplies_by_gamma_every_step_size_epochs():
    lrs = lrs_after_epochs({"type": "step", "step_size": 2, "gamma": 0.5}, 7, spe=3)
    assert lrs == pytest.approx([0.5 ** (n // 2) for n in range(8)])


def test_multistep_scheduler_cuts_at_each_milestone():
    lrs = lrs_after_epochs({"type": "multistep", "milestones": [2, 5], "gamma": 0.1}, 6, spe=4)
    assert lrs == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_multistep_milestones_count_from_the_start_of_training_with_warmup():
    lrs = lrs_after_epochs({"type": "multistep", "milestones": [3], "gamma": 0.1, "warmup_epochs": 1}, 5, spe=2)
    assert lrs[1:] == pytest.approx([1, 1, 0.1, 0.1, 0.1])


def test_exponential_scheduler_multiplies_by_gamma_each_epoch():
    lrs = lrs_after_epochs({"type": "exponential", "gamma": 0.9}, 5, spe=7)
    assert lrs == pytest.approx([0.9 ** n for n in range(6)])


def test_cosine_scheduler_anneals_to_eta_min():
    lrs = lrs_after_epochs({"type": "cosine", "eta_min": 0.1}, 4, spe=5)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lrs[4] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_cosine_restarts_returns_to_the_base_lr_every_period():
    lrs = lrs_after_epochs({"type": "cosine_restarts", "t_0": 2, "t_mult": 1}, 6, spe=3)
    assert lrs[1] == pytest.approx(0.5)
    assert lrs[2] == pytest.approx(1.0) and lrs[4] == pytest.approx(1.0) and lrs[6] == pytest.approx(1.0)
    lrs = lrs_after_epochs({"type": "cosine_restarts", "t_0": 1, "t_mult": 2}, 3, spe=4)
    assert lrs[1] == pytest.approx(1.0) and lrs[2] == pytest.approx(0.5) and lrs[3] == pytest.approx(1.0)


def test_one_cycle_peaks_at_max_lr_then_anneals():
    from nnspec.compiler.spec import TrainingSpec

    tr = TrainingSpec.model_validate({"epochs": 10, "loss": {"type": "cross_entropy"},
                                      "scheduler": {"type": "one_cycle", "max_lr": 2.0, "pct_start": 0.3}})
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    schedule = tr.scheduler.build(opt, 10, 10)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        schedule.step_batch()
        lrs.append(opt.param_groups[0]["lr"])
    peak = int(np.argmax(lrs))
    assert max(lrs) == pytest.approx(2.0, rel=1e-3)
    assert 25 <= peak <= 35
    assert lrs[0] == pytest.approx(2.0 / 25)
    assert lrs[-1] < 1e-3
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


def test_warmup_ramps_linearly_then_hands_over_to_the_schedule():
    from nnspec.compiler.spec import TrainingSpec

    tr = TrainingSpec.model_validate({"epochs": 6, "loss": {"type": "cross_entropy"},
                                      "scheduler": {"type": "step", "step_size": 2, "gamma": 0.1, "warmup_epochs": 2}})
    opt = sgd_param(0.5)
    schedule = tr.scheduler.build(opt, 5, 6)
    used = []  # the lr each optimizer step uses
    for _ in range(30):
        used.append(opt.param_groups[0]["lr"])
        schedule.step_batch()
    assert used[:10] == pytest.approx([0.5 * (t + 1) / 10 for t in range(10)])  # warmup: 2 epochs x 5 steps
    assert used[10:20] == pytest.approx([0.5] * 10)  # the step schedule's first step_size epochs
    assert used[20:30] == pytest.approx([0.05] * 10)


def test_plateau_cuts_the_lr_after_patience_epochs_without_improvement():
    losses = [1.0, 0.9, 0.8, 0.8, 0.85, 0.8, 0.81, 0.7, 0.7]
    lrs = lrs_after_epochs({"type": "plateau", "monitor": "val_loss", "factor": 0.5, "patience": 2}, len(losses), spe=3,
                           metrics=[{"val_loss": v} for v in losses])
    # best 0.8 at epoch 3; epochs 4, 5, 6 do not improve -> the third bad epoch (> patience) halves the lr
    assert lrs[1:] == pytest.approx([1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5])


def test_plateau_watches_a_max_metric_in_its_own_direction():
    accs = [0.5, 0.6, 0.6, 0.6, 0.7]
    lrs = lrs_after_epochs({"type": "plateau", "monitor": "val_accuracy", "factor": 0.1, "patience": 1}, len(accs), spe=1,
                           metrics=[{"val_accuracy": v} for v in accs])
    assert lrs[1:] == pytest.approx([1, 1, 1, 0.1, 0.1])


SCHEDULERS = {
    "step": {"type": "step", "step_size": 1, "gamma": 0.5},
    "multistep": {"type": "multistep", "milestones": [2, 3]},
    "exponential": {"type": "exponential", "gamma": 0.8},
    "plateau": {"type": "plateau", "patience": 0, "factor": 0.5},
    "cosine": {"type": "cosine", "warmup_epochs": 1},
    "cosine_restarts": {"type": "cosine_restarts", "t_0": 2},
    "one_cycle": {"type": "one_cycle", "max_lr": 0.05},
}


def test_every_scheduler_type_has_a_case():
    assert_table_covers("SCHEDULERS", {config["type"] for config in SCHEDULERS.values()}, SchedulerSpec)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_the_loop_steps_each_scheduler_once_per_batch_and_once_per_epoch(h, tmp_path, name):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 4, "scheduler": SCHEDULERS[name],
                                                  "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.5}}))
    result, rows = fit(spec)
    spe = len(batch_slices(len(result.data.train), spec.training.batch_size))
    # the same schedule driven by hand, fed the loop's own validation rows
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05, momentum=0.5)
    schedule = spec.training.scheduler.build(opt, spe, 4)
    for row in rows:
        for _ in range(spe):
            schedule.step_batch()
        schedule.step_epoch(row)
        assert row["lr"] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
    assert len({round(r["lr"], 12) for r in rows}) > 1 or name == "plateau"
    assert all(math.isfinite(r["train_loss"]) for r in rows)


@pytest.mark.parametrize("optimizer", tags(OptimizerSpec))
def test_one_cycle_trains_with_every_optimizer(h, tmp_path, optimizer):
    # OneCycleLR cycles momentum by default, which Adagrad does not have
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 2, "optimizer": {"type": optimizer},
                                                  "scheduler": {"type": "one_cycle", "max_lr": 0.05}}))
    result, rows = fit(spec)
    assert len(rows) == 2 and rows[-1]["lr"] < 0.05


# --- losses -------------------------------------------------------------------------------

def test_cross_entropy_label_smoothing_matches_the_formula():
    from nnspec.compiler.losses import CrossEntropySpec

    loss = CrossEntropySpec(type="cross_entropy", label_smoothing=0.2).build(np.array([0, 1, 2]), 3)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    target = torch.full((2, 3), 0.2 / 3)
    target[0, 0] += 0.8
    target[1, 2] += 0.8
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    assert float(loss(logits, y)) == pytest.approx(float(expected), rel=1e-6)


def test_balanced_class_weights_are_n_over_k_times_count():
    from nnspec.compiler.losses import CrossEntropySpec

    targets = np.array([0] * 6 + [1] * 3 + [2])
    loss = CrossEntropySpec(type="cross_entropy", class_weights="balanced").build(targets, 3)
    assert loss.weight.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    fixed = CrossEntropySpec(type="cross_entropy", class_weights=[1.0, 2.0, 3.0]).build(targets, 3)
    assert fixed.weight.tolist() == [1.0, 2.0, 3.0]


def test_regression_losses_match_their_formulas():
    from nnspec.compiler.losses import HuberSpec, L1Spec, MseSpec

    pred, true = torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([[0.5], [1.0], [1.0]])
    e = (pred - true).abs()
    assert float(MseSpec(type="mse").build(None, 1)(pred, true)) == pytest.approx(float((e**2).mean()))
    assert float(L1Spec(type="l1").build(None, 1)(pred, true)) == pytest.approx(float(e.mean()))
    huber = torch.where(e < 2, 0.5 * e**2, 2 * (e - 1)).mean()
    assert float(HuberSpec(type="huber", delta=2.0).build(None, 1)(pred, true)) == pytest.approx(float(huber))


def test_bce_is_sigmoid_cross_entropy_on_one_logit():
    from nnspec.compiler.losses import BceSpec

    z, y = torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]])
    expected = -(torch.log(torch.sigmoid(z[0])) + torch.log(1 - torch.sigmoid(z[1]))) / 2
    assert float(BceSpec(type="bce").build(None, 1)(z, y)) == pytest.approx(float(expected), rel=1e-6)


LOSS_CASES = {
    "cross_entropy": ("classification", "iris", {"type": "cross_entropy", "label_smoothing": 0.1, "class_weights": "balanced"}, 3),
    "bce": ("binary", "breast_cancer", {"type": "bce"}, 1),
    "mse": ("regression", "diabetes", {"type": "mse"}, 1),
    "l1": ("regression", "diabetes", {"type": "l1"}, 1),
    "huber": ("regression", "diabetes", {"type": "huber", "delta": 0.5}, 1),
}


def test_every_loss_type_has_a_case():
    assert_table_covers("LOSS_CASES", {loss["type"] for _, _, loss, _ in LOSS_CASES.values()}, LossSpec)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_each_loss_trains_its_task(h, tmp_path, name):
    task, data, loss, outputs = LOSS_CASES[name]
    spec = h.load(tmp_path, h.base_spec(
        task=task,
        data={"source": {"type": "builtin", "name": data}, "split": {"stratify": task != "regression"},
              "preprocessing": {"normalize_target": task == "regression"}},
        model={"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"}, {"type": "linear", "out_features": outputs}]},
        training={"epochs": 8, "loss": loss, "batch_size": 32, "optimizer": {"type": "adam", "lr": 0.03}}))
    result, rows = fit(spec)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    if task == "regression":
        assert result.summary["test"]["r2"] > 0.2
        assert {"mse", "rmse", "mae", "r2"} <= set(result.summary["test"])
    else:
        assert result.summary["test"]["accuracy"] > 0.8
        assert ("auc" in result.summary["test"]) == (task == "binary")


# --- augmentation -------------------------------------------------------------------------

def augmentation(config: dict, task="classification", k=3):
    from pydantic import TypeAdapter

    from nnspec.compiler.augmentation import AugmentationSpec

    return TypeAdapter(AugmentationSpec).validate_python(config).build(task, k)


def test_gaussian_noise_adds_noise_of_the_given_std():
    torch.manual_seed(0)
    x = torch.zeros(200, 50)
    y = torch.arange(200)
    out, y2 = augmentation({"type": "gaussian_noise", "std": 0.3})(x, y)
    assert float(out.std()) == pytest.approx(0.3, rel=0.05) and abs(float(out.mean())) < 0.01
    assert torch.equal(y2, y)


def test_random_shift_moves_each_sample_by_at_most_max_shift_with_zero_fill():
    torch.manual_seed(0)
    n, length, m = 64, 12, 2
    x = torch.arange(1, length + 1, dtype=torch.float32).repeat(n, 1)  # 1..12 in each row
    out, _ = augmentation({"type": "random_shift", "max_shift": m})(x, torch.zeros(n, dtype=torch.long))
    seen = set()
    for row in out:
        nz = row[row != 0]
        start = int(torch.nonzero(row)[0])
        s = start if row[start] == 1 else -int(row[start] - 1)  # right shift s > 0, left s < 0
        assert abs(s) <= m
        expected = torch.zeros(length)
        if s >= 0:
            expected[s:] = x[0, : length - s]
        else:
            expected[: length + s] = x[0, -s:]
        assert torch.equal(row, expected), (row, s)
        assert len(nz) == length - abs(s)
        seen.add(s)
    assert seen == set(range(-m, m + 1))  # every offset happens in 64 draws


def test_random_shift_and_random_crop_shift_images_along_both_axes():
    torch.manual_seed(1)
    img = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    for config, m in (({"type": "random_shift", "max_shift": 1}, 1), ({"type": "random_crop", "padding": 2}, 2)):
        out, _ = augmentation(config)(img, torch.zeros(32, dtype=torch.long))
        offsets = set()
        for sample in out[:, 0]:
            # find (dy, dx) such that sample == img shifted by it, zero filled
            matches = []
            for dy in range(-m, m + 1):
                for dx in range(-m, m + 1):
                    ref = torch.zeros(8, 8)
                    ref[max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)] = \
                        img[0, 0, max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)]
                    if torch.equal(sample, ref):
                        matches.append((dy, dx))
            assert len(matches) == 1, sample
            offsets.add(matches[0])
        assert len({dy for dy, _ in offsets}) > 1 and len({dx for _, dx in offsets}) > 1


def test_horizontal_flip_mirrors_left_right():
    torch.manual_seed(0)
    x = torch.randn(40, 3, 5, 6)
    y = torch.arange(40)
    nearly_always, _ = augmentation({"type": "horizontal_flip", "p": 0.999})(x, y)
    assert torch.equal(nearly_always, x.flip(-1))
    never, _ = augmentation({"type": "horizontal_flip", "p": 0.0})(x, y)
    assert torch.equal(never, x)
    half, y2 = augmentation({"type": "horizontal_flip", "p": 0.5})(x, y)
    flipped = [bool(torch.equal(a, b.flip(-1))) for a, b in zip(half, x)]
    kept = [bool(torch.equal(a, b)) for a, b in zip(half, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each sample is either mirrored or untouched
    assert 5 < sum(flipped) < 35 and torch.equal(y2, y)


def _orientation(img: torch.Tensor) -> float:
    """Principal-axis angle (degrees) of an image's intensity."""
    h, w = img.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    m = img.double().clamp(min=0)
    cy, cx = (m * yy).sum() / m.sum(), (m * xx).sum() / m.sum()
    mu20, mu02 = (m * (xx - cx) ** 2).sum(), (m * (yy - cy) ** 2).sum()
    mu11 = (m * (xx - cx) * (yy - cy)).sum()
    return math.degrees(0.5 * math.atan2(2 * float(mu11), float(mu20 - mu02)))


def test_random_rotation_rotates_by_at_most_degrees():
    torch.manual_seed(0)
    img = torch.zeros(33, 33)
    img[16, 4:29] = 1.0  # a horizontal bar through the center
    x = img.repeat(48, 1, 1, 1)
    out, _ = augmentation({"type": "random_rotation", "degrees": 20})(x, torch.zeros(48, dtype=torch.long))
    angles = [abs(_orientation(s[0])) for s in out]
    assert max(angles) <= 20.5
    assert max(angles) > 10  # it does rotate
    assert all(float(s.sum()) == pytest.approx(float(img.sum()), rel=0.1) for s in out)  # the bar stays inside


def test_mixup_mixes_inputs_and_labels_with_the_same_lambda():
    torch.manual_seed(0)
    n, k = 16, 4
    x = torch.eye(n)  # row i is e_i, so a mixed row shows which samples it mixes and how much
    y = torch.arange(n) % k
    mixed_x, soft = augmentation({"type": "mixup", "alpha": 0.4}, "classification", k)(x, y)
    assert soft.shape == (n, k)
    assert torch.allclose(soft.sum(1), torch.ones(n))
    onehot = torch.nn.functional.one_hot(y, k).float()
    lam = None
    for i in range(n):
        assert torch.allclose(mixed_x[i].sum(), torch.tensor(1.0))
        j = [c for c in torch.nonzero(mixed_x[i]).view(-1).tolist() if c != i]
        if not j:  # paired with itself
            assert torch.allclose(soft[i], onehot[i])
            continue
        lam_i = float(mixed_x[i, i])
        lam = lam if lam is not None else lam_i
        assert lam_i == pytest.approx(lam, abs=1e-6)  # one λ per batch
        assert torch.allclose(soft[i], lam_i * onehot[i] + (1 - lam_i) * onehot[j[0]], atol=1e-6)
    binary_y = torch.tensor([[0.0], [1.0]] * 4)
    _, soft_b = augmentation({"type": "mixup"}, "binary", 1)(torch.randn(8, 3), binary_y)
    assert soft_b.shape == (8, 1) and bool(((soft_b >= 0) & (soft_b <= 1)).all())


AUGMENTATIONS = [
    {"type": "gaussian_noise", "std": 0.1},
    {"type": "random_shift", "max_shift": 1},
    {"type": "horizontal_flip", "p": 0.5},
    {"type": "random_crop", "padding": 1},
    {"type": "random_rotation", "degrees": 10},
    {"type": "mixup", "alpha": 0.2},
]


@pytest.fixture(scope="module")
def digits_image_spec():
    return {
        "version": 1, "name": "aug", "task": "classification",
        "data": {"source": {"type": "builtin", "name": "digits"}, "split": {"validation": 0.2, "test": 0.2, "stratify": True}},
        "model": {"input": {"shape": [1, 8, 8]},
                  "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                             {"type": "max_pool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
        "training": {"epochs": 3, "batch_size": 64, "loss": {"type": "cross_entropy"}, "optimizer": {"type": "adam", "lr": 0.01}},
    }


@pytest.mark.parametrize("aug", AUGMENTATIONS, ids=[a["type"] for a in AUGMENTATIONS])
def test_each_augmentation_trains_an_image_model(h, tmp_path, digits_image_spec, aug):
    spec = h.load(tmp_path, h.merge(digits_image_spec, {"training": {"augmentation": [aug]}}))
    result, rows = fit(spec)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.summary["test"]["accuracy"] > 0.7


# --- regularization -----------------------------------------------------------------------

def test_weight_penalty_adds_2_lambda_theta_to_weight_gradients_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 2))
    weights = [p for p in net.parameters() if p.dim() >= 2]
    assert len(weights) == 2
    x = torch.randn(8, 4)

    def grads(l2, l1):
        net.zero_grad()
        loss = net(x).pow(2).mean()
        (loss + weight_penalty(weights, l2, l1)).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    plain, l2, l1 = grads(0.0, 0.0), grads(0.3, 0.0), grads(0.0, 0.2)
    for name, p in net.named_parameters():
        if p.dim() >= 2:
            assert torch.allclose(l2[name] - plain[name], 2 * 0.3 * p.detach(), atol=1e-6), name
            assert torch.allclose(l1[name] - plain[name], 0.2 * p.detach().sign(), atol=1e-6), name
        else:  # biases, batch-norm scale and shift
            assert torch.allclose(l2[name], plain[name]) and torch.allclose(l1[name], plain[name]), name
    assert weight_penalty(weights, 0.0, 0.0) == 0.0


def test_the_loop_applies_l2_to_weights_and_not_biases(h, tmp_path):
    """One full-batch SGD step with and without l2: weights differ by lr·2λθ₀, biases not at all."""
    base = h.base_spec(model={"layers": [{"type": "linear", "out_features": 3}]},
                       training={"epochs": 1, "batch_size": 1000, "optimizer": {"type": "sgd", "lr": 0.5}})
    lam, lr = 0.1, 0.5
    plain = fit(h.load(tmp_path, base))[0].model
    spec = h.load(tmp_path, h.merge(base, {"training": {"regularization": {"l2": lam}}}))
    penalized = fit(spec)[0].model
    seed_everything(spec.training.seed, False)
    from nnspec.runtime.data import prepare_data

    init = compile_model(spec, prepare_data(spec).raw)  # the same seeded initialisation as the loop's
    w0, w_plain, w_l2 = init[0].weight.detach(), plain[0].weight.detach(), penalized[0].weight.detach()
    assert not torch.allclose(w_plain, w0)
    assert torch.allclose(w_plain - w_l2, lr * 2 * lam * w0, atol=1e-5)
    assert torch.allclose(plain[0].bias, penalized[0].bias, atol=1e-6)


def test_grad_clip_norm_bounds_the_update(h, tmp_path):
    base = h.base_spec(model={"layers": [{"type": "linear", "out_features": 3}]},
                       training={"epochs": 1, "batch_size": 1000, "optimizer": {"type": "sgd", "lr": 1.0},
                                 "regularization": {"grad_clip_norm": 0.01}})
    spec = h.load(tmp_path, base)
    trained = fit(spec)[0].model
    seed_everything(spec.training.seed, False)
    from nnspec.runtime.data import prepare_data

    init = compile_model(spec, prepare_data(spec).raw)
    step = torch.cat([(a.detach() - b.detach()).view(-1) for a, b in zip(trained.parameters(), init.parameters())])
    assert float(step.norm()) == pytest.approx(0.01, rel=1e-3)  # lr 1 x a gradient clipped to norm 0.01


def test_dropout_and_batch_norm_are_off_in_evaluation(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(model={"layers": [
        {"type": "linear", "out_features": 32}, {"type": "batch_norm"}, {"type": "relu"}, {"type": "dropout", "p": 0.5},
        {"type": "linear", "out_features": 3}]}, training={"epochs": 2}))
    result, _ = fit(spec)
    net, x = result.model, result.data.validation.x
    bn = net[1]
    net.train()
    a, b = predict_logits(net, x), predict_logits(net, x)
    assert torch.equal(a, b)
    assert net.training  # predict_logits restores the mode it found
    running = bn.running_mean.clone()
    with torch.no_grad():
        net.eval()
        assert torch.allclose(net(x), a)
        assert torch.equal(bn.running_mean, running)  # evaluation leaves the statistics alone
        net.train()
        assert not torch.equal(net(x), net(x))  # training mode: dropout differs per call
        assert not torch.equal(bn.running_mean, running)


# --- early stopping -----------------------------------------------------------------------

@pytest.mark.slow
def test_early_stopping_stops_after_patience_and_restores_the_best_weights(h, tmp_path):
    # min_delta so large that nothing after epoch 1 counts as an improvement
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 20, "early_stopping": {
        "monitor": "val_loss", "patience": 3, "min_delta": 1e9, "restore_best": True}}))
    result, rows = fit(spec, runs_dir=tmp_path / "runs")
    run = result.run_dir
    assert len(rows) == 4 and result.summary["epochs_run"] == 4
    assert result.summary["stopped_early"] is True and result.summary["best_epoch"] == 1
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == 1 and last["epoch"] == 4
    final = result.model.state_dict()
    assert all(torch.equal(final[k], best["model"][k]) for k in final)
    assert any(not torch.equal(final[k], last["model"][k]) for k in final)
    with open(run / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_early_stopping_on_a_max_metric_keeps_the_best_epoch(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 12, "optimizer": {"type": "sgd", "lr": 0.05},
                                                  "early_stopping": {"monitor": "val_accuracy", "patience": 2}}))
    result, rows = fit(spec)
    accs = [r["val_accuracy"] for r in rows]
    best = result.summary["best_epoch"]
    assert accs[best - 1] == max(accs) and accs.index(max(accs)) == best - 1  # the first epoch with the best value
    assert len(rows) == 12 or len(rows) == best + 2
    assert result.summary["validation"]["accuracy"] == pytest.approx(max(accs))  # restored weights are evaluated


@pytest.mark.slow
def test_early_stopping_without_restore_keeps_the_last_weights(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 10, "early_stopping": {
        "patience": 2, "min_delta": 1e9, "restore_best": False}}))
    result, rows = fit(spec, runs_dir=tmp_path / "runs")
    last = load_checkpoint(result.run_dir / "last.pt")["model"]
    assert len(rows) == 3 and all(torch.equal(v, last[k]) for k, v in result.model.state_dict().items())


# --- reproducibility and resume -----------------------------------------------------------

def _metric_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in csv.DictReader(f)]  # timings aside


@pytest.mark.slow
def test_same_spec_and_seed_give_identical_metrics(h, tmp_path):
    data = h.base_spec(model={"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"}, {"type": "dropout", "p": 0.3},
                                         {"type": "linear", "out_features": 3}]},
                       training={"epochs": 4, "augmentation": [{"type": "gaussian_noise", "std": 0.1}]})
    spec = h.load(tmp_path, data)
    a, _ = fit(spec, runs_dir=tmp_path / "a")
    b, _ = fit(spec, runs_dir=tmp_path / "b")
    rows_a, rows_b = _metric_rows(a.run_dir), _metric_rows(b.run_dir)
    assert len(rows_a) == 4 and rows_a == rows_b
    with open(a.run_dir / "metrics.csv") as f:
        assert "seconds" in next(csv.DictReader(f))
    assert a.summary["test"] == b.summary["test"]
    other, _ = fit(h.load(tmp_path, h.merge(data, {"training": {"seed": 1}})))
    assert other.summary["validation"] != a.summary["validation"]  # the seed matters


RESUMABLE = {
    "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "batch_norm"}, {"type": "relu"},
                         {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 3}]},
    "training": {"epochs": 6, "deterministic": True, "optimizer": {"type": "adam", "lr": 0.01},
                 "scheduler": {"type": "cosine", "warmup_epochs": 1},
                 "augmentation": [{"type": "gaussian_noise", "std": 0.05}, {"type": "mixup", "alpha": 0.4}],
                 "early_stopping": {"patience": 50}},
}


@pytest.mark.slow
def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(**RESUMABLE))
    full, _ = fit(spec, runs_dir=tmp_path / "full")

    def stop_at_3(row, epochs):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(spec, runs_dir=tmp_path / "cut", device="cpu", on_epoch=stop_at_3)
    run = info.value.run_dir
    assert load_checkpoint(run / "last.pt")["epoch"] == 3
    assert info.value.epoch == 3  # the last epoch whose checkpoint is in last.pt
    resumed, rows = fit(spec, resume=run)
    assert [r["epoch"] for r in rows] == [4, 5, 6]
    assert resumed.run_dir == run

    a, b = load_checkpoint(full.run_dir / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 6
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _metric_rows(full.run_dir) == _metric_rows(run)
    assert full.summary["test"] == resumed.summary["test"]
    assert resumed.summary["epochs_run"] == 6


@pytest.mark.slow
def test_resume_via_the_cli_continues_to_the_specs_epochs(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 4}))

    def stop_at_2(row, epochs):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(spec, runs_dir=tmp_path / "runs", device="cpu", on_epoch=stop_at_2)
    result = h.cli(["train", "--resume", info.value.run_dir, "--no-export", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 4 and summary["run_dir"] == str(info.value.run_dir)
    again = h.cli(["train", "--resume", info.value.run_dir, "--set", "training.epochs=9", "--no-export"])
    assert again.exit_code == 2 and "cannot change a resumed run" in again.stderr


# --- data sources -------------------------------------------------------------------------

@pytest.mark.slow
def test_digits_mlp_reaches_95_percent(digits_run):
    assert digits_run.summary["test"]["accuracy"] >= 0.95
    assert digits_run.summary["epochs_run"] == 15


def test_csv_with_string_labels_and_a_categorical_column_trains(h, tmp_path):
    spec = h.load(tmp_path, h.table_spec(h.write_csv(tmp_path)))
    result, _ = fit(spec)
    assert result.data.raw.x is None  # released before training: the splits hold their own copies
    raw = prepare_data(spec).raw
    assert raw.labels == ["cat", "fox", "owl"]
    assert raw.features == [{"name": "x1", "type": "numeric"},
                            {"name": "color", "type": "categorical", "categories": h.COLORS},
                            {"name": "x2", "type": "numeric"}]
    assert raw.x.shape[1] == 5
    frame = h.table()
    onehot = raw.x[:, 1:4]
    assert (onehot.sum(1) == 1).all()
    assert [h.COLORS[i] for i in onehot.argmax(1)] == frame["color"].tolist()
    assert result.summary["test"]["accuracy"] >= 0.85


def test_parquet_source_trains_like_the_csv(h, tmp_path):
    path = tmp_path / "animals.parquet"
    h.table().to_parquet(path)
    result, _ = fit(h.load(tmp_path, h.table_spec(path, "parquet")))
    assert result.data.raw.labels == ["cat", "fox", "owl"]
    assert result.summary["test"]["accuracy"] >= 0.85
    csv_result, _ = fit(h.load(tmp_path, h.table_spec(h.write_csv(tmp_path)), name="csv.yaml"))
    np.testing.assert_array_equal(result.data.train.x, csv_result.data.train.x)
    assert result.summary["test"] == csv_result.summary["test"]


def test_image_folder_trains_above_chance(h, tmp_path):
    root = h.image_folder(tmp_path / "images", per_class=30)
    spec = h.image_spec(tmp_path, epochs=40)
    assert spec.data.source.path == str(root)  # made absolute, relative to the spec file
    result, _ = fit(spec)
    raw = prepare_data(spec).raw
    assert raw.labels == list(h.IMAGE_CLASSES) and raw.x.shape == (90, 1, 16, 16)
    assert raw.image == {"size": [16, 16], "color": "grayscale"}
    assert 0 <= raw.x.min() and raw.x.max() <= 255
    assert result.summary["test"]["accuracy"] > 0.6  # chance: 1/3


def test_npz_source_trains(h, tmp_path):
    h.npz_file(tmp_path / "signals.npz")
    spec = h.load(tmp_path, h.base_spec(
        data={"source": {"type": "npz", "path": "signals.npz"}},
        model={"layers": [{"type": "conv1d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"},
                          {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
        training={"epochs": 20, "batch_size": 32}))
    result, _ = fit(spec)
    assert result.data.raw.shape == (2, 6) and result.data.raw.labels == ["0", "1", "2"]
    assert result.summary["test"]["accuracy"] > 0.7


# --- the run directory --------------------------------------------------------------------

@pytest.mark.slow
def test_the_run_directory_holds_every_artifact(h, digits_run):
    from nnspec.compiler import load_spec

    run, summary = digits_run.run_dir, digits_run.summary
    spec = load_spec(run / "spec.yaml")
    assert spec == load_spec(h.SPECS / "digits_mlp.yaml", ["training.epochs=15"])  # resolved (defaults filled in) and loads back to the same spec
    text = (run / "spec.yaml").read_text()
    assert "label_smoothing" in text and "deterministic" in text  # every default is written out

    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 16))
    for column in ("train_loss", "val_loss", "val_accuracy", "lr", "seconds"):
        assert all(math.isfinite(float(r[column])) for r in rows), column
    assert float(rows[-1]["lr"]) == pytest.approx(0.003 * 0.3, rel=1e-4)  # step: x0.3 after epoch 10

    for name in ("last.pt", "best.pt"):
        state = torch.load(run / name, weights_only=True)
        assert set(state["model"]) == set(digits_run.model.state_dict())
        assert set(state["preprocessing"]["x"]) == {"shift", "scale"}
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 15
    for name in ("curves.png", "confusion.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert on_disk["seed"] == 0 and on_disk["device"] == "cpu" and on_disk["epochs_run"] == 15
    assert on_disk["seconds"] > 0 and {"nnspec", "torch", "numpy", "python"} <= set(on_disk["versions"])
    assert on_disk["validation"]["accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]), abs=1e-6)


def test_regressors_write_curves_but_no_confusion_matrix(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(task="regression", data={"source": {"name": "diabetes"}, "split": {"stratify": False}},
                                        model={"layers": [{"type": "linear", "out_features": 1}]},
                                        training={"epochs": 2, "loss": {"type": "mse"}, "log_train_metrics": True}))
    result, _ = fit(spec, runs_dir=tmp_path / "runs")
    assert (result.run_dir / "curves.png").is_file() and not (result.run_dir / "confusion.png").exists()
    with open(result.run_dir / "metrics.csv") as f:
        assert {"val_rmse", "val_r2", "train_rmse"} <= set(next(csv.DictReader(f)))


def test_train_split_metrics_only_when_asked(h, tmp_path, monkeypatch):
    from nnspec.runtime import train as train_module

    scored = []
    real = train_module.evaluate_split
    monkeypatch.setattr(train_module, "evaluate_split", lambda spec, net, loss, split, *a: scored.append(split) or real(spec, net, loss, split, *a))
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 3}))
    result, _ = fit(spec, runs_dir=tmp_path / "runs")
    assert not any(split is result.data.train for split in scored)  # validation per epoch, test at the end
    with open(result.run_dir / "metrics.csv") as f:
        columns = set(next(csv.DictReader(f)))
    assert "train_loss" in columns and "val_accuracy" in columns and not any(c.startswith("train_acc") for c in columns)


@pytest.mark.slow
def test_evaluate_cli_matches_the_summarys_test_metrics(h, digits_run):
    result = h.cli(["evaluate", digits_run.run_dir, "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    summary = json.loads((digits_run.run_dir / "summary.json").read_text())
    assert out["split"] == "test" and out["metrics"].keys() == summary["test"].keys()
    for k, v in summary["test"].items():
        assert out["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    val = h.cli(["evaluate", digits_run.run_dir, "--split", "validation", "--json"])
    assert json.loads(val.stdout)["metrics"]["accuracy"] == pytest.approx(summary["validation"]["accuracy"])
    bad = h.cli(["evaluate", digits_run.run_dir, "--split", "train"])
    assert bad.exit_code == 2 and "--split" in bad.stderr


def test_bf16_autocast_trains_on_the_cpu(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 6, "precision": "bf16", "optimizer": {"type": "adam", "lr": 0.03}}))
    result, rows = fit(spec)
    assert all(math.isfinite(r["train_loss"]) for r in rows) and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # autocast, not a cast of the weights
    assert result.summary["test"]["accuracy"] > 0.6


@pytest.mark.slow
def test_resuming_a_run_that_stopped_early_trains_no_further(h, tmp_path):
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 10, "early_stopping": {"patience": 2, "min_delta": 1e9}}))
    first, _ = fit(spec, runs_dir=tmp_path / "runs")
    assert first.summary["epochs_run"] == 3 and first.summary["stopped_early"]
    last = (first.run_dir / "last.pt").read_bytes()
    again, rows = fit(spec, resume=first.run_dir)
    assert rows == [] and (first.run_dir / "last.pt").read_bytes() == last
    assert again.summary["epochs_run"] == 3 and again.summary["stopped_early"] and again.summary["best_epoch"] == 1
    assert again.summary["test"] == pytest.approx(first.summary["test"])  # the best weights again
    finished_spec = h.load(tmp_path, h.base_spec(training={"epochs": 2}), name="finished.yaml")
    done, _ = fit(finished_spec, runs_dir=tmp_path / "done")
    _, more = fit(finished_spec, resume=done.run_dir)
    assert more == []  # a finished run has nothing left to train
