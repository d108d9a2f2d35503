"""scikit-learn's bundled data sets read straight from the files it ships, without importing scikit-learn:
`import sklearn.datasets` pulls in scipy and costs more than a small training run. Arrays equal scikit-learn's
loaders' (tests/compiler/test_bundled.py compares them element for element)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path

import numpy as np

_CELL_NUCLEUS = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points",
                 "symmetry", "fractal dimension")
FEATURE_NAMES = {  # as scikit-learn's loaders name them (digits has none: its 64 values are pixels)
    "iris": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    "wine": ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
             "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline"],
    "breast_cancer": [f"mean {n}" for n in _CELL_NUCLEUS] + [f"{n} error" for n in _CELL_NUCLEUS]
                     + [f"worst {n}" for n in _CELL_NUCLEUS],
    "diabetes": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
}
_LABELLED_CSV = {"iris": "iris.csv", "wine": "wine_data.csv", "breast_cancer": "breast_cancer.csv"}


def data_folder() -> Path:
    """sklearn/datasets/data of the installed scikit-learn, found without importing it."""
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise ImportError("builtin data sets need scikit-learn's bundled files: pip install 'nnspec[train]'")
    return Path(found.submodule_search_locations[0]) / "datasets" / "data"


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(x float64 (N, F), target: class indices int64 or values float64, feature names) of a bundled data set."""
    folder = data_folder()
    if name == "digits":
        with gzip.open(folder / "digits.csv.gz", "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        return table[:, :-1], table[:, -1].astype(np.int64), None
    if name == "diabetes":
        with gzip.open(folder / "diabetes_data_raw.csv.gz", "rt") as f:
            x = np.loadtxt(f)
        with gzip.open(folder / "diabetes_target.csv.gz", "rt") as f:
            y = np.loadtxt(f)
        # scikit-learn's scaled=True: standardized per column (population std), then divided by sqrt(N)
        x = (x - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0)
        return x / len(x) ** 0.5, y, FEATURE_NAMES[name]
    with open(folder / _LABELLED_CSV[name], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]  # the first line holds counts and class names
    table = np.array(rows, dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64), FEATURE_NAMES[name]
