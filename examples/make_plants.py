"""Writes examples/plants.csv: 400 made-up plants, with a few empty cells as real files have.

decision = discard when the plant is brown and old, repot when it is large for its age or sits in
clay, else keep; 5 % of the decisions are flipped at random. `size` and `color` have gaps.
"""

from pathlib import Path

import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
n = 400
age = rng.integers(2, 60, n)
size = (4 + 0.8 * age + rng.normal(0, 6, n)).round(1)
color = rng.choice(["green", "yellow", "brown"], n, p=[0.6, 0.25, 0.15])
soil = rng.choice(["loam", "sand", "clay"], n)
decision = np.where((color == "brown") & (age > 20), "discard",
                    np.where((size > 0.8 * age + 12) | (soil == "clay"), "repot", "keep"))
flip = rng.random(n) < 0.05
decision[flip] = rng.choice(["keep", "repot", "discard"], flip.sum())
frame = pd.DataFrame({"size": size, "color": color, "age": age, "soil": soil, "decision": decision})
frame.loc[rng.choice(n, 12, replace=False), "size"] = np.nan
frame.loc[rng.choice(n, 8, replace=False), "color"] = None
frame.to_csv(Path(__file__).with_name("plants.csv"), index=False)
