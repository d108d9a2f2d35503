"""Seeded train/held-out splits in NumPy, drawing exactly as scikit-learn's `train_test_split` does.

The same seed gives the same rows as before this module existed (scikit-learn did the split then),
so earlier results reproduce, without importing scikit-learn and scipy for it (a second of start-up).
"""

from __future__ import annotations

import math

import numpy as np


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Samples per class when drawing n_draws from class_counts: the floored proportional share, then
    one more for the classes with the largest remainders (ties broken at random)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            now = min(len(tied), need)
            floored[rng.choice(tied, size=now, replace=False)] += 1
            need -= now
            if need == 0:
                break
    return floored.astype(int)


def split_off(indices: np.ndarray, share: float, seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held): `share` of `indices` (rounded up) held out at random, in the same proportion of
    every class of `labels` when given; a ValueError says why a split is impossible."""
    n = len(indices)
    n_held = math.ceil(share * n)
    n_kept = n - n_held
    if not 0 < share < 1 or n_kept <= 0:
        raise ValueError(f"holding out {share:g} of {n} samples leaves none to train on")
    rng = np.random.RandomState(seed)
    if labels is None:
        order = rng.permutation(n)
        return indices[order[n_held:]], indices[order[:n_held]]
    classes, position, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"classes {classes[counts < 2].tolist()} have a single sample; stratifying needs two per class")
    if min(n_kept, n_held) < len(classes):
        raise ValueError(f"{min(n_kept, n_held)} samples cannot hold one of each of the {len(classes)} classes")
    by_class = np.split(np.argsort(position, kind="stable"), np.cumsum(counts)[:-1])
    kept_per_class = _approximate_mode(counts, n_kept, rng)
    held_per_class = _approximate_mode(counts - kept_per_class, n_held, rng)
    kept, held = [], []
    for members, k, h in zip(by_class, kept_per_class, held_per_class):
        shuffled = members.take(rng.permutation(len(members)), mode="clip")
        kept.extend(shuffled[:k])
        held.extend(shuffled[k:k + h])
    return indices[rng.permutation(kept)], indices[rng.permutation(held)]
