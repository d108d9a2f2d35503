"""The NumPy split draws exactly the rows scikit-learn's train_test_split drew (so seeds reproduce
earlier results), the NumPy AUC equals scikit-learn's, and `nnspec train` imports no scikit-learn."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from nnspec.runtime.data import split_indices
from nnspec.runtime.metrics import roc_auc
from nnspec.runtime.split import split_off


@pytest.mark.parametrize("case", range(60))
def test_split_off_draws_the_rows_scikit_learn_drew(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(20, 400))
    share = float(rng.choice([0.1, 0.15, 0.2, 0.25, 1 / 3, 0.5]))
    seed = int(rng.integers(0, 1000))
    classes = int(rng.integers(2, 6))
    labels = rng.choice(classes, size=n, p=rng.dirichlet(np.ones(classes))) if case % 2 else None
    if labels is not None:
        labels[:2 * classes] = np.repeat(np.arange(classes), 2)  # two of each class at least
    indices = np.sort(rng.choice(10 * n, size=n, replace=False))  # not 0..n-1: the indices are carried
    kept, held = split_off(indices, share, seed, labels)
    theirs_kept, theirs_held = train_test_split(indices, test_size=share, random_state=seed, stratify=labels)
    np.testing.assert_array_equal(kept, theirs_kept)
    np.testing.assert_array_equal(held, theirs_held)


def test_three_way_splits_keep_their_proportions_and_seed():
    y = np.repeat([0, 1, 2], [100, 60, 40])
    train, val, test = split_indices(200, y, 0.15, 0.2, seed=3, stratify=True)
    assert sorted(np.r_[train, val, test].tolist()) == list(range(200))
    assert [len(train), len(val), len(test)] == [130, 30, 40]
    for part, share in ((val, 0.15), (test, 0.2)):
        assert np.bincount(y[part], minlength=3).tolist() == pytest.approx([100 * share, 60 * share, 40 * share], abs=1)
    again = split_indices(200, y, 0.15, 0.2, seed=3, stratify=True)
    assert all((a == b).all() for a, b in zip((train, val, test), again))
    other = split_indices(200, y, 0.15, 0.2, seed=4, stratify=True)
    assert not (other[2] == test).all()
    with pytest.raises(ValueError, match=r"classes \[7\] have a single sample"):
        split_off(np.arange(5), 0.4, 0, np.array([1, 1, 7, 1, 1]))


def test_roc_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = rng.integers(0, 2, 50)
        score = rng.integers(0, 6, 50) / 5  # many ties
        assert roc_auc(true, score) == pytest.approx(roc_auc_score(true, score), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(4), np.arange(4.0)))


@pytest.mark.slow
def test_nnspec_train_on_a_csv_imports_no_scikit_learn(h, tmp_path):
    csv = h.write_csv(tmp_path)
    spec = h.spec_file(tmp_path, h.table_spec(csv, training={"epochs": 2}))
    code = ("import sys\nfrom nnspec.cli import main\nsys.argv = ['nnspec', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')], 'scikit-learn or scipy imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, "train", str(spec), "--quiet", "--runs-dir", str(tmp_path / "runs"),
                           "--repo", str(tmp_path / "models")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
