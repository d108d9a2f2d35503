"""training.threads: torch's thread count for a run; by default one per physical core the process may use."""

import json

import pytest

from nnspec.runtime.threads import physical_cores, training_threads


def _cpu(root, cpu, package, core):
    topology = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
    topology.mkdir(parents=True)
    (topology / "physical_package_id").write_text(f"{package}\n")
    (topology / "core_id").write_text(f"{core}\n")


def test_physical_cores_count_cores_not_hyperthreads_and_respect_a_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr("nnspec.runtime.threads._affinity", lambda: [0, 1, 2, 3, 5])
    for cpu, package, core in ((0, 0, 0), (1, 0, 1), (2, 0, 0), (3, 0, 1), (4, 1, 0), (5, 1, 0)):
        _cpu(tmp_path, cpu, package, core)  # cpus 0/2 and 1/3 are hyper-threads of one core each
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert physical_cores(tmp_path, cgroup) == 3  # (0,0), (0,1), (1,0): cpu 4 is outside the affinity mask
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert physical_cores(tmp_path, cgroup) == 3
    (cgroup / "cpu.max").write_text("150000 100000\n")  # a quota of 1.5 CPUs
    assert physical_cores(tmp_path, cgroup) == 2
    assert physical_cores(tmp_path / "nowhere", cgroup) == 2  # no topology: the logical CPUs (5), capped
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert physical_cores(tmp_path / "nowhere", cgroup) == 5  # no topology and no quota: the logical CPUs


def test_the_spec_then_omp_num_threads_then_physical_cores_per_local_rank(monkeypatch):
    monkeypatch.setattr("nnspec.runtime.threads.physical_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert training_threads(None) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert training_threads(None) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert training_threads(None) == 5
    assert training_threads(3) == 3


@pytest.mark.slow
def test_train_uses_and_records_its_threads(h, tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    spec = h.spec_file(tmp_path, h.base_spec(training={"epochs": 2}))
    result = h.cli(["train", spec, "--threads", "2", "--no-export", "--json", "--quiet", "--runs-dir", tmp_path / "runs"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threads"] == 2 and torch.get_num_threads() == 2
    assert "threads: 2" in next((tmp_path / "runs" / "t").glob("*/spec.yaml")).read_text()
    refused = h.cli(["train", spec, "--threads", "0"])
    assert refused.exit_code == 2 and "--threads" in refused.output
