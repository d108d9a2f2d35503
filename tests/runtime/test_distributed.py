"""`torchrun --standalone --nproc-per-node 2 -m nnspec train` on CPU (gloo; --standalone picks a free port): the ranks split every epoch's batches,
decide on the same numbers, end like one process does, and leave one run directory."""

import json
import os
import subprocess
import sys

import pytest

from nnspec.runtime.data import prepare_data
from nnspec.runtime.train import train

pytestmark = pytest.mark.slow  # two torchrun processes train twice

# `python -m nnspec` plus recorders: every batch a rank feeds DDP (as per-sample sums) and the metrics
# each rank's scheduler decides on; each rank writes its record when it exits.
WRAPPER = """
import atexit, json, os, sys
from torch.nn.parallel import DistributedDataParallel as DDP
from nnspec.compiler.schedulers import LRSchedule

rank = int(os.environ["RANK"])
record = {"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "batches": [], "decided_on": []}
forward, step_epoch = DDP.forward, LRSchedule.step_epoch

def recording_forward(self, x, *args, **kwargs):
    record["batches"].append(x.detach().double().flatten(1).sum(1).tolist())
    return forward(self, x, *args, **kwargs)

def recording_step_epoch(self, metrics):
    record["decided_on"].append(metrics["val_loss"])
    return step_epoch(self, metrics)

DDP.forward, LRSchedule.step_epoch = recording_forward, recording_step_epoch

def dump():
    with open(os.path.join(os.environ["RECORD_DIR"], f"rank{rank}.json"), "w") as f:
        json.dump(record, f)

atexit.register(dump)
from nnspec.cli import main
sys.argv = ["nnspec", *sys.argv[1:]]
main()
"""


def test_torchrun_two_cpu_ranks_shard_batches_and_match_one_process(h, tmp_path):
    h.npz_file(tmp_path / "signals.npz", n=400)
    spec_path = h.spec_file(tmp_path, h.base_spec(
        name="dist",
        data={"source": {"type": "npz", "path": "signals.npz"}},
        model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 16}, {"type": "batch_norm"},
                          {"type": "relu"}, {"type": "linear", "out_features": 3}]},
        training={"epochs": 8, "batch_size": 32, "optimizer": {"type": "adam", "lr": 0.02},
                  "scheduler": {"type": "plateau", "patience": 1, "factor": 0.5},
                  "early_stopping": {"patience": 4}}))
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    runs = tmp_path / "runs"
    env = os.environ | {"RECORD_DIR": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(tmp_path / "wrapper.py"), "train", str(spec_path), "--runs-dir", str(runs),
                           "--no-export", "--quiet", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0 alone prints
    assert summary["world_size"] == 2

    # exactly one run directory, complete
    runs_made = list((runs / "dist").iterdir())
    assert len(runs_made) == 1 and runs_made[0] == type(runs_made[0])(summary["run_dir"])
    assert {"spec.yaml", "metrics.csv", "last.pt", "summary.json"} <= {p.name for p in runs_made[0].iterdir()}

    # the ranks saw disjoint halves of the training split every epoch
    from nnspec.compiler import load_spec

    spec = load_spec(spec_path)
    data = prepare_data(spec)
    train_rows = {round(v, 5) for v in data.train.x.double().flatten(1).sum(1).tolist()}
    assert len(train_rows) == len(data.train)  # fingerprints are unique
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    epochs = summary["epochs_run"]
    shard = len(data.train) // 2
    per_epoch = len(records[0]["batches"]) // epochs
    assert len(records[0]["batches"]) == len(records[1]["batches"]) == per_epoch * epochs
    for e in range(epochs):
        seen = []
        for rec in records:
            rows = [round(v, 5) for batch in rec["batches"][e * per_epoch : (e + 1) * per_epoch] for v in batch]
            assert len(rows) == len(set(rows)) == shard  # each rank: its own shard, once per epoch
            seen.append(set(rows))
        assert not seen[0] & seen[1]  # disjoint
        assert seen[0] | seen[1] <= train_rows
    # every rank stepped its scheduler (and early stopping) on the same numbers
    assert records[0]["decided_on"] == records[1]["decided_on"] and len(records[0]["decided_on"]) == epochs

    # one process gets to the same place
    single = train(spec, write=False, device="cpu").summary
    assert single["test"]["accuracy"] > 0.75 and summary["test"]["accuracy"] > 0.75
    assert abs(single["test"]["accuracy"] - summary["test"]["accuracy"]) <= 0.1
