"""Where a benchmark ran: CPU model, threads, torch version, device name, load."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from losskit.bench.results import MachineInfo

__all__ = ["busy_warning", "cpu_model", "machine_info"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: torch.device) -> MachineInfo:
    """Describe this machine and ``device`` for a results file."""
    cpu = cpu_model()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return MachineInfo(
        cpu_model=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        device=str(device),
        device_name=name,
        cuda_version=torch.version.cuda,
        load_average=load,
    )


def busy_warning(machine: MachineInfo) -> str | None:
    """A warning when the 1-minute load average exceeds the free CPUs for this run's threads.

    Intra-op thread pools that wait on each other degrade badly on an oversubscribed
    machine (tens of times slower on a shared 2-core box), so CPU timings taken then
    say more about the neighbours than about the loss.
    """
    if machine.device != "cpu" or not machine.load_average or not machine.cpu_count:
        return None
    load = machine.load_average[0]
    if load + machine.torch_threads <= machine.cpu_count:
        return None
    n = machine.torch_threads
    advice = "compare ratios from the same run" + (", or use --threads 1" if n > 1 else "")
    return (
        f"the machine is busy (load average {load:g} on {machine.cpu_count} CPUs, {n} torch "
        f"thread{'s' if n != 1 else ''}): CPU timings will be noisy; {advice}"
    )
