"""Standard FID features: pytorch-fid's InceptionV3 pool3 (2048 dims) with the published FID weights.

The weights (``pt_inception-2015-12-05-6726825d.pth``, the TensorFlow FID Inception ported by
pytorch-fid) are never downloaded here: this tool runs on machines without network access,
and a silent download, or worse a silent fallback to other weights, would make FID numbers
incomparable. pytorch-fid's own ``fid_inception_v3()`` always downloads, so this module
builds the same architecture without weights, loads the state dict from a local file, and
hands the network to pytorch-fid's ``InceptionV3`` wrapper, which does the block slicing, the
bilinear resize to 299x299 and the [0, 1] -> [-1, 1] scaling exactly as pytorch-fid does.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import gen._torchvision  # noqa: F401  (before pytorch_fid, which imports torchvision)
from gen.checkpoint import file_sha256
from gen.errors import GenError
from gen.metrics import frechet
from gen.metrics.figures import Report
from gen.runtime import cache_dir

# isort: split
import pytorch_fid.inception as pytorch_fid_inception
from pytorch_fid.inception import (
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
    InceptionV3,
    _inception_v3,
)

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = pytorch_fid_inception.FID_WEIGHTS_URL
FEATURE_DIM = 2048


def hub_weights_path() -> Path:
    """Where pytorch-fid's own download would have put the weights (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILENAME


def find_fid_weights(path: str | Path | None = None) -> Path | None:
    """The FID weights file: ``path`` when given, else the torch hub cache, else None.

    An explicit path that does not exist is a user's mistake and raises GenError rather
    than quietly falling back to the cache.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise GenError(f"FID Inception weights file {path} does not exist.")
        return path
    cached = hub_weights_path()
    return cached if cached.is_file() else None


def missing_weights_message() -> str:
    """One line telling the user which file to put where, and where to get it."""
    return (
        f"FID needs the Inception weights {FID_WEIGHTS_FILENAME}: download {FID_WEIGHTS_URL} "
        f"and put it at {hub_weights_path()} (or pass its path explicitly)."
    )


def _fid_inception_architecture() -> nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` without its download: same layers, untrained weights."""
    inception = _inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = FIDInceptionE_1(1280)
    inception.Mixed_7c = FIDInceptionE_2(2048)
    return inception


def random_inception_for_tests(seed: int = 0) -> nn.Module:
    """The FID Inception architecture with RANDOM weights: for tests and benchmarks only.

    Its features mean nothing; FID computed with it is not FID. Save its ``state_dict()`` to
    a file and load that through ``load_fid_inception`` to exercise the real code path.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inception = _fid_inception_architecture()
        # PyTorch's default init shrinks activations layer by layer until pool3 is ~1e-8, which
        # makes covariances degenerate; He init keeps them O(1) through the ReLUs.
        for module in inception.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return inception


@contextmanager
def _build_from(inception: nn.Module) -> Iterator[None]:
    # InceptionV3.__init__ calls the module-level fid_inception_v3() (which downloads); point
    # that name at our already-loaded network for the duration of the constructor only.
    original = pytorch_fid_inception.fid_inception_v3
    pytorch_fid_inception.fid_inception_v3 = lambda: inception
    try:
        yield
    finally:
        pytorch_fid_inception.fid_inception_v3 = original


def load_fid_inception(weights_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """pytorch-fid's ``InceptionV3([3])`` (pool3, 2048 dims) with weights read from ``weights_path``.

    Raises GenError when the file is missing, unreadable, or not a state dict of this network.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise GenError(f"{weights_path} does not exist. {missing_weights_message()}")
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise GenError(f"{weights_path} is not a readable PyTorch weights file ({error}).") from error
    if not isinstance(state_dict, dict):
        raise GenError(f"{weights_path} does not hold a state dict (found {type(state_dict).__name__}).")
    inception = _fid_inception_architecture()
    try:
        inception.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise GenError(
            f"{weights_path} is not a state dict for the FID Inception network ({first_line})."
        ) from error
    with _build_from(inception):
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]], use_fid_inception=True)
    # channels_last runs the convolutions about 1.6x faster on CPU (oneDNN) and is neutral on GPU.
    return model.to(device, memory_format=torch.channels_last).eval()


def inception_features(
    model: nn.Module,
    images_uint8: torch.Tensor,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Pool3 features (N, 2048) float32 of uint8 images (N, 3, H, W).

    The wrapper resizes to 299x299 and rescales to [-1, 1] itself; it expects floats in [0, 1].
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        shape = tuple(images_uint8.shape)
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images_uint8.dtype} {shape}")
    model.eval()
    chunks = []
    batches = range(0, len(images_uint8), batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="Inception features", unit="batch", disable=not progress):
            batch = images_uint8[start : start + batch_size].to(device).float() / 255.0
            pooled = model(batch)[0]  # (B, 2048, 1, 1)
            chunks.append(pooled.flatten(1).cpu().numpy())
    if not chunks:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def real_inception_statistics(
    network: torch.nn.Module, images: torch.Tensor, fingerprint: str, weights_sha: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    path = cache_dir() / "fid" / f"{fingerprint[:16]}-{weights_sha[:12]}.npz"
    if path.is_file():
        cached = np.load(path)
        return cached["mu"], cached["sigma"]
    mu, sigma = frechet.gaussian_statistics(inception_features(network, images, device=device))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(handle)
    np.savez(temporary, mu=mu, sigma=sigma)
    os.replace(temporary, path)
    return mu, sigma


def inception_figures(
    report: Report,
    weights: Path,
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    fingerprint: str,
    device: torch.device,
    progress: bool,
) -> None:
    """The report's ``fid``: Inception FID of the synthetic images against the real ones (whose
    statistics are cached per folder fingerprint and weights), with a note when either side has
    too few images for an unbiased estimate."""
    network = load_fid_inception(weights, device)
    mu, sigma = real_inception_statistics(network, real_images, fingerprint, file_sha256(weights), device)
    fake_mu, fake_sigma = frechet.gaussian_statistics(
        inception_features(network, fake_images, device=device, progress=progress)
    )
    report.add("fid", frechet.frechet_distance(mu, sigma, fake_mu, fake_sigma), weights=weights.name)
    if min(len(real_images), len(fake_images)) <= FEATURE_DIM:
        report.notes.append(
            f"Inception FID from fewer than {FEATURE_DIM + 1} images per side is biased "
            "upwards; compare it only with FIDs from as many images."
        )
