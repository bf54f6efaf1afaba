"""Checkpoint files and the run folder that holds them: written atomically, read with
``torch.load(weights_only=True)``, the folder locked for the life of a run (``run_folder_lock``).

A checkpoint holds everything to resume training bit for bit (networks, EMA generator,
optimisers, every random stream) and everything to sample without the run folder: the
architecture JSON and the class names in label order.

A checkpoint may come from anyone, so it is read with ``weights_only=True`` (tensors and plain
containers, never code), and its class names, which become folder and file names when
sampling, must pass the rule class folders follow (gen.image_folder.check_class_name).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from gen.architecture import GeneratorSpec, from_json
from gen.errors import GenError
from gen.image_folder import check_class_name, check_distinct_class_names
from gen.runtime import left_by_a_dead_process

FORMAT_VERSION = 1
_NAME = re.compile(r"checkpoint-(\d+)\.pt$")


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint-{iteration:07d}.pt"


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private (0600); the result should be like any file the user makes.
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries atomic_write left in ``folder`` when its process was killed
    (``.NAME.PID.*.tmp`` of a process that is gone); returns what was removed."""
    removed = []
    for stale in folder.glob(".*.*.*.tmp") if folder.is_dir() else ():
        if left_by_a_dead_process(stale.name.split(".")[-3]):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the run folder for the life of the run, so that a second
    ``gen train`` (or ``gen search``) into it stops with a sentence instead of overwriting the
    first one's files. An flock on the folder itself: no lock file to leave behind, and the kernel
    releases it when the process dies, however it dies. A folder made here and left empty (the
    run was refused) is removed again."""
    if not enabled:
        yield
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise GenError(f"cannot use {run_dir} as a run folder: {error.strerror}.") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenError(
                f"{run_dir} is in use by another gen train or gen search; wait for it to finish or "
                "choose another --out."
            ) from None
        yield
    finally:
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                run_dir.rmdir()


def save_checkpoint(path: Path, state: dict[str, Any]) -> str:
    """Write ``state`` atomically; returns the file's SHA-256."""
    state = {"format": FORMAT_VERSION, **state}
    atomic_write(path, lambda file: torch.save(state, file))
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoints_in(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*.pt") if (m := _NAME.search(p.name))]
    return [path for _, path in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder meaning its latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = checkpoints_in(path)
        if not found:
            raise GenError(f"no checkpoint in {path}; train there first (gen train --out {path}).")
        return found[-1]
    if not path.is_file():
        raise GenError(f"checkpoint {path} does not exist.")
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign file
        raise GenError(f"{path} is not a readable gen checkpoint ({type(error).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise GenError(f"{path} is not a gen checkpoint of format {FORMAT_VERSION}.")
    check_state(state, path)
    state["path"] = str(path)
    return state


# A checkpoint's weights: the generator's EMA (what sampling uses) always; the training networks
# and optimisers when it is to be resumed (check_resumable).
_NETWORK_WEIGHTS = {
    "generator_ema": "generator_spec",
    "generator": "generator_spec",
    "discriminator": "discriminator_spec",
}


def check_state(state: dict[str, Any], path: str | Path) -> None:
    """GenError (one sentence) unless the checkpoint's fields are what gen writes: distinct valid
    class names, a whole iteration, architectures within gen.architecture's bounds for as many
    classes, and weights that are named tensors. Checked before any network is built."""
    class_names = check_class_names(state.get("class_names"), path)
    iteration = state.get("iteration")
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        raise GenError(f"checkpoint {path} is damaged: its iteration {iteration!r} is not a whole number.")
    for key in ("generator_spec", "discriminator_spec"):
        if key not in state and key == "discriminator_spec":
            continue
        try:
            spec = from_json(state.get(key))
        except GenError as error:
            raise GenError(f"checkpoint {path} is damaged: its {key}: {error}") from None
        if spec.kind != key.removesuffix("_spec") or spec.num_classes != len(class_names):
            raise GenError(
                f"checkpoint {path} is damaged: its {key} is not a {key.removesuffix('_spec')} "
                f"for its {len(class_names)} classes."
            )
    for key in _NETWORK_WEIGHTS:
        if key not in state and key != "generator_ema":
            continue
        weights = state.get(key)
        if (
            not isinstance(weights, dict)
            or not weights
            or not all(isinstance(name, str) and isinstance(t, torch.Tensor) for name, t in weights.items())
        ):
            raise GenError(f"checkpoint {path} is damaged: its {key} weights are missing or not tensors.")
    # The EMA is a copy of the generator: the same tensors by name and shape (checked without
    # building the network, which for a wide spec costs seconds).
    if "generator" in state and _shapes(state["generator_ema"]) != _shapes(state["generator"]):
        raise GenError(f"checkpoint {path} is damaged: its generator_ema weights do not match its generator.")


def _shapes(weights: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in weights.items()}


def check_resumable(state: dict[str, Any], path: str | Path) -> None:
    """GenError unless the checkpoint holds what resuming reads besides the networks: its
    settings, data fingerprint, both optimisers and every random stream."""
    rng = state.get("rng")
    noise = rng.get("noise") if isinstance(rng, dict) else None
    streams = [rng.get("data"), *noise] if isinstance(noise, list) and noise else []
    settings_ok = isinstance(state.get("config"), str) and isinstance(state.get("data_fingerprint"), str)
    try:
        settings_ok = settings_ok and isinstance(json.loads(state["config"]), dict)
    except ValueError:
        settings_ok = False
    optimisers_ok = all(
        isinstance(state.get(key), dict) and {"state", "param_groups"} <= set(state[key])
        for key in ("g_optimizer", "d_optimizer")
    )
    streams_ok = bool(streams) and all(
        isinstance(stream, torch.Tensor) and stream.dtype == torch.uint8 for stream in streams
    )
    networks_ok = "generator" in state and "discriminator" in state and "discriminator_spec" in state
    if not (settings_ok and optimisers_ok and streams_ok and networks_ok):
        raise GenError(
            f"checkpoint {path} is damaged: it lacks the networks, settings, optimiser state or random "
            "streams a resume needs; sample from it, or train anew."
        )


def load_weights(
    network: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path, key: str
) -> None:
    """``network.load_state_dict(weights)``, a mismatch with the network its spec builds being one
    sentence (a damaged or crafted checkpoint) rather than torch's list of keys."""
    try:
        network.load_state_dict(weights)
    except RuntimeError:
        raise GenError(
            f"checkpoint {path} is damaged: its {key} weights do not fit its architecture."
        ) from None


def load_matching_weights(network: torch.nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """Copy every tensor of ``weights`` whose name and shape the network also has; returns how
    many were copied. Between two cells of one search space the stems, up/downsampling blocks,
    attention layers and every edge that kept its operation match; the rest starts fresh."""
    own = network.state_dict()
    matching = {
        name: tensor for name, tensor in weights.items() if name in own and own[name].shape == tensor.shape
    }
    network.load_state_dict(matching, strict=False)
    return len(matching)


def check_class_names(class_names: Any, path: str | Path) -> tuple[str, ...]:
    """The checkpoint's class names, or GenError unless each is a distinct valid folder name."""
    if not isinstance(class_names, list | tuple) or not all(isinstance(name, str) for name in class_names):
        raise GenError(f"checkpoint {path} is damaged: its class_names is not a list of names.")
    for name in class_names:
        try:
            check_class_name(name)
        except GenError as error:
            shown = repr(name) if len(name) <= 40 else f"{name[:20]!r}..."
            raise GenError(
                f"checkpoint {path} names a class {shown} that cannot be a folder name: {error}"
            ) from None
    if len(set(class_names)) != len(class_names):
        raise GenError(f"checkpoint {path} is damaged: it names a class twice.")
    try:
        check_distinct_class_names(class_names)
    except GenError as error:
        raise GenError(f"checkpoint {path} names classes that cannot all be folders: {error}") from None
    return tuple(class_names)


@dataclass(frozen=True)
class SamplingState:
    """What sampling needs from a checkpoint."""

    path: Path
    iteration: int
    generator_spec: GeneratorSpec
    class_names: tuple[str, ...]
    generator_ema: dict[str, torch.Tensor]


def load_for_sampling(checkpoint: str | Path | dict, device: torch.device | str = "cpu") -> SamplingState:
    """From a checkpoint file or run folder, or from a state ``load_checkpoint`` returned."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    path = Path(state["path"])
    class_names = check_class_names(state.get("class_names"), path)
    try:
        generator_spec = from_json(json.loads(state["generator_spec"]))
        iteration, generator_ema = state["iteration"], state["generator_ema"]
    except (KeyError, TypeError, ValueError) as error:
        raise GenError(f"checkpoint {path} is damaged: {type(error).__name__} {error}.") from None
    if not isinstance(generator_spec, GeneratorSpec) or generator_spec.num_classes != len(class_names):
        raise GenError(
            f"checkpoint {path} is damaged: its generator does not match its {len(class_names)} classes."
        )
    return SamplingState(path, iteration, generator_spec, class_names, generator_ema)
