"""How many torch threads a training run uses: one per physical core it may run on, unless told.

Hyper-threads share a core's arithmetic units, so a second thread per core gains little for dense
kernels while two trainings side by side fight over the cores; and a cgroup CPU quota (a container)
caps the cores whatever the affinity mask says.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cgroup_cores(cgroup_root: Path) -> int | None:
    """The CPU quota of cgroup v2 (`cpu.max`: "max 100000" or "150000 100000") rounded up, or None."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def physical_cores(sys_root: str | os.PathLike = "/sys", cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """Physical cores this process may run on: distinct (package, core) pairs among the CPUs of its
    affinity mask (all of them when the topology cannot be read), capped by a cgroup CPU quota."""
    cpus = _affinity()
    cores = set()
    for cpu in cpus:
        topology = Path(sys_root) / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores = set(cpus)
            break
    quota = _cgroup_cores(Path(cgroup_root))
    return max(1, min(len(cores), quota) if quota else len(cores))


def training_threads(threads: int | None) -> int:
    """The intra-op threads for a run: `training.threads`, else OMP_NUM_THREADS when set, else the
    physical cores shared among this machine's torchrun ranks."""
    if threads:
        return threads
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, physical_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def set_training_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (see training_threads) and one inter-op thread; return the count."""
    import torch

    count = training_threads(threads)
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # settable once per process, before any inter-op work: a later run keeps it
        pass
    return count
