"""The FID Inception path: finding the weights, refusing bad ones, and running end to end.

Nothing here downloads. The end-to-end test saves the state dict of a RANDOMLY initialised
FID Inception (``random_inception_for_tests``) to a temporary file and loads it through the
same ``load_fid_inception`` that loads the published weights; its numbers mean nothing.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from gen.errors import GenError
from gen.metrics.frechet import frechet_distance, gaussian_statistics
from gen.metrics.inception import (
    FID_WEIGHTS_FILENAME,
    FID_WEIGHTS_URL,
    find_fid_weights,
    inception_features,
    load_fid_inception,
    missing_weights_message,
    random_inception_for_tests,
)


@pytest.fixture(scope="module")
def random_weights_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "random_inception_for_tests.pth"
    torch.save(random_inception_for_tests(seed=0).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_inception(random_weights_path) -> torch.nn.Module:
    return load_fid_inception(random_weights_path)


def test_without_weights_find_returns_none_and_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_fid_weights(None) is None
    message = missing_weights_message()
    assert FID_WEIGHTS_FILENAME in message and FID_WEIGHTS_URL in message
    assert str(tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME) in message
    assert "\n" not in message


def test_weights_are_found_in_the_hub_cache_or_at_an_explicit_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert find_fid_weights(None) == cached
    explicit = tmp_path / "elsewhere.pth"
    explicit.write_bytes(b"placeholder")
    assert find_fid_weights(str(explicit)) == explicit
    with pytest.raises(GenError, match="does not exist"):
        find_fid_weights(tmp_path / "missing.pth")


def test_files_that_are_not_fid_inception_weights_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a pickle")
    with pytest.raises(GenError, match="not a readable PyTorch weights file"):
        load_fid_inception(junk)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, foreign)
    with pytest.raises(GenError, match="not a state dict for the FID Inception network"):
        load_fid_inception(foreign)
    with pytest.raises(GenError, match="does not exist"):
        load_fid_inception(tmp_path / "absent.pth")


def test_the_loaded_network_carries_the_file_weights(random_inception, random_weights_path):
    state = torch.load(random_weights_path, weights_only=True)
    first_conv = random_inception.blocks[0][0].conv.weight
    assert torch.equal(first_conv, state["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(
        random_inception.blocks[3][2].branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"]
    )


@pytest.fixture(scope="module")
def real_and_fake_features(random_inception) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (8, 3, 64, 64), generator=generator, dtype=torch.uint8)
    fake = (real.int() // 2).to(torch.uint8)  # darker copies: a different set
    features = inception_features(random_inception, torch.cat([real, fake]), batch_size=5)
    return features[:8], features[8:]


def test_inception_features_of_uint8_images(random_inception, real_and_fake_features):
    real_features, fake_features = real_and_fake_features
    assert real_features.shape == (8, 2048) and real_features.dtype == np.float32
    assert np.isfinite(real_features).all() and real_features.std() > 0
    assert not np.allclose(real_features, fake_features)
    # The batch an image falls in must not change its features.
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (8, 3, 64, 64), generator=generator, dtype=torch.uint8)
    again = inception_features(random_inception, real[:3], batch_size=2)
    np.testing.assert_allclose(again, real_features[:3], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # scipy's sqrtm of a 2048x2048 singular product: about 10 s alone, minutes on a busy CPU
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 8 images cannot span 2048 dimensions
def test_fid_runs_end_to_end_on_random_weights(real_and_fake_features):
    real_features, fake_features = real_and_fake_features
    distance = frechet_distance(*gaussian_statistics(real_features), *gaussian_statistics(fake_features))
    assert np.isfinite(distance) and distance > 0
