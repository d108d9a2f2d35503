"""Builtin data sets are read from scikit-learn's bundled files without importing scikit-learn, and equal its loaders."""

import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets

from nnspec.compiler.bundled import read_bundled
from nnspec.compiler.data import BuiltinSource

LOADERS = {"digits": sklearn.datasets.load_digits, "iris": sklearn.datasets.load_iris, "wine": sklearn.datasets.load_wine,
           "breast_cancer": sklearn.datasets.load_breast_cancer, "diabetes": sklearn.datasets.load_diabetes}


@pytest.mark.parametrize("name", LOADERS)
def test_bundled_arrays_equal_scikit_learns_loaders(name):
    theirs = LOADERS[name]()
    x, target, features = read_bundled(name)
    np.testing.assert_array_equal(x, theirs.data)  # bit for bit: seeds and docs/RESULTS.md reproduce
    np.testing.assert_array_equal(target, theirs.target)
    assert target.dtype == theirs.target.dtype
    assert features == (None if name == "digits" else [str(n) for n in theirs.feature_names])


def test_builtin_source_gives_float32_inputs_and_its_labels(tmp_path):
    iris = BuiltinSource(type="builtin", name="iris").load(tmp_path, "classification")
    assert iris.x.dtype == np.float32 and iris.x.shape == (150, 4)
    assert iris.y.dtype == np.int64 and np.bincount(iris.y).tolist() == [50, 50, 50]
    assert iris.features[0] == {"name": "sepal length (cm)", "type": "numeric"}
    diabetes = BuiltinSource(type="builtin", name="diabetes").load(tmp_path, "regression")
    assert diabetes.y.shape == (442, 1) and diabetes.y.dtype == np.float32


def test_loading_builtin_sources_imports_no_scikit_learn(tmp_path):
    code = ("import sys\nfrom pathlib import Path\nfrom nnspec.compiler.data import BuiltinSource\n"
            f"for name in {list(LOADERS)!r}:\n    BuiltinSource(type='builtin', name=name).load(Path('.'), 'classification')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
