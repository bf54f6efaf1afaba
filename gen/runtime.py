"""Where the work runs: device choice and the torchrun / DistributedDataParallel context."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from gen.devices import DEVICES
from gen.errors import GenError


def mps_available() -> bool:
    """Whether this torch can run on an Apple GPU (Metal Performance Shaders)."""
    return torch.backends.mps.is_available()


DEFAULT_CACHE = Path.home() / ".cache" / "gen"


def cache_dir() -> Path:
    """Where classifiers and real-image statistics are cached ($GEN_CACHE_DIR to move it)."""
    return Path(os.environ.get("GEN_CACHE_DIR") or DEFAULT_CACHE)


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The one place that turns --device into a torch device: auto means CUDA when torch sees a
    GPU, else Apple's MPS, else the CPU; a device asked for by name that is absent is a sentence."""
    if name not in DEVICES:
        raise GenError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise GenError("--device cuda was asked for, but this torch sees no CUDA GPU.")
    if name == "mps" and not mps_available():
        raise GenError(
            "--device mps was asked for, but this torch sees no Apple GPU (MPS); use --device cpu or auto."
        )
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    if name == "mps" or (name == "auto" and mps_available()):
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly one-process) training job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_distributed(device_name: str) -> Distributed:
    """Join the process group when launched by ``torchrun``; a plain run is a group of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(0, 1, resolve_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), device)


def stop_distributed(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def left_by_a_dead_process(pid: str) -> bool:
    """Whether the process ``pid`` (from a temporary file's name) is gone, or the name holds none:
    its half-written files are then safe to remove. Another user's live process counts as alive."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False
