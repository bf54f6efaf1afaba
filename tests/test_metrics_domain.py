"""The domain classifier: shapes, determinism, augmentation, saving, and learning real cells."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gen.errors import GenError
from gen.metrics.domain import (
    DomainClassifier,
    DomainClassifierConfig,
    build_classifier,
    domain_features_and_probabilities,
    load_classifier,
    random_dihedral,
    save_classifier,
    train_domain_classifier,
)

PBC4 = Path(__file__).resolve().parents[2] / "shared/data/pbc4"
CLASS_COLOURS = torch.tensor([[200, 40, 40], [40, 40, 200], [40, 160, 40]], dtype=torch.float32)


def toy_cells(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A disc whose colour is the class, at a random place and size, on a noisy grey background."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASS_COLOURS)).repeat_interleave(per_class)
    count = len(labels)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centres = 20 + 24 * torch.rand(count, 2, generator=generator)
    radii = 8 + 8 * torch.rand(count, generator=generator)
    inside = ((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) < radii[
        :, None, None
    ] ** 2
    background = torch.full((count, 3, 64, 64), 128.0)
    images = torch.where(inside[:, None], CLASS_COLOURS[labels][:, :, None, None], background)
    images += 20 * torch.randn(images.shape, generator=generator)
    return images.clamp(0, 255).round().to(torch.uint8), labels


def accuracy(model: DomainClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    _, probabilities = domain_features_and_probabilities(model, images, batch_size=64)
    return float((probabilities.argmax(1) == labels.numpy()).mean())


@pytest.fixture(scope="module")
def trained() -> DomainClassifier:
    images, labels = toy_cells(24, seed=0)
    return train_domain_classifier(images, labels, 3, epochs=4, seed=0, progress=False)


def test_features_and_probabilities_have_the_documented_shapes(trained):
    images, _ = toy_cells(5, seed=1)
    features, probabilities = domain_features_and_probabilities(trained, images, batch_size=4)
    assert features.shape == (15, trained.config.feature_dim) == (15, 128)
    assert probabilities.shape == (15, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    logits = trained(images[:2].float() / 127.5 - 1)
    assert logits.shape == (2, 3)


def test_it_learns_an_easy_task(trained):
    images, labels = toy_cells(20, seed=2)
    assert accuracy(trained, images, labels) > 0.9


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_stream_alone():
    images, labels = toy_cells(6, seed=3)
    state = torch.get_rng_state()
    first = train_domain_classifier(images, labels, 3, epochs=1, seed=5, progress=False, batch_size=8)
    assert torch.equal(torch.get_rng_state(), state)
    second = train_domain_classifier(images, labels, 3, epochs=1, seed=5, progress=False, batch_size=8)
    other = train_domain_classifier(images, labels, 3, epochs=1, seed=6, progress=False, batch_size=8)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not torch.equal(first.classifier.weight, other.classifier.weight)


def test_same_seed_same_initial_weights():
    first, second = build_classifier(4, seed=1), build_classifier(4, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_augmentation_only_turns_and_mirrors():
    images, _ = toy_cells(4, seed=4)
    augmented = random_dihedral(images, torch.Generator().manual_seed(0))
    for original, turned in zip(images, augmented, strict=True):
        symmetries = [
            torch.rot90(version, k, dims=(1, 2)) for version in (original, original.flip(2)) for k in range(4)
        ]
        assert any(torch.equal(turned, symmetry) for symmetry in symmetries)
    assert not torch.equal(augmented, images)


def test_save_and_load_round_trip(trained, tmp_path):
    path = tmp_path / "classifiers" / "domain.pt"
    save_classifier(trained, path)
    assert [p.name for p in path.parent.iterdir()] == ["domain.pt"]  # the temporary file was renamed
    loaded = load_classifier(path)
    assert loaded.config == trained.config
    images, _ = toy_cells(3, seed=5)
    for ours, theirs in zip(
        domain_features_and_probabilities(trained, images),
        domain_features_and_probabilities(loaded, images),
        strict=True,
    ):
        np.testing.assert_array_equal(ours, theirs)


def test_config_round_trips_through_a_dict():
    config = DomainClassifierConfig(num_classes=5, channels=(16, 16, 32), dropout=0.1)
    assert DomainClassifierConfig.from_dict(config.to_dict()) == config
    assert DomainClassifier(config).features(torch.zeros(1, 3, 64, 64)).shape == (1, 32)


def test_loading_a_missing_or_foreign_file_is_a_user_error(tmp_path):
    with pytest.raises(GenError, match="does not exist"):
        load_classifier(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(GenError, match="not a readable classifier file"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(GenError, match="not a domain classifier"):
        load_classifier(tmp_path / "other.pt")


def test_labels_outside_the_classes_are_a_user_error():
    images, labels = toy_cells(2, seed=6)
    with pytest.raises(GenError, match="labels must lie in 0..1"):
        train_domain_classifier(images, labels, 2, epochs=1, progress=False)


def load_pbc4_split(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class: centre square, Lanczos to 64x64."""
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in (PBC4 / split).iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg"))[:per_class]:
            with Image.open(path) as image:
                image = image.convert("RGB")
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side)).resize((64, 64), Image.LANCZOS)
            images.append(np.asarray(image))
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


@pytest.mark.skipif(not PBC4.is_dir(), reason=f"the pbc4 blood-cell images are not at {PBC4}")
def test_pbc4_smoke_learns_real_blood_cells():
    train_images, train_labels = load_pbc4_split("train", per_class=80)
    test_images, test_labels = load_pbc4_split("test", per_class=50)
    started = time.perf_counter()
    model = train_domain_classifier(train_images, train_labels, 4, epochs=6, seed=0, progress=False)
    test_accuracy = accuracy(model, test_images, test_labels)
    print(f"pbc4 smoke: {test_accuracy:.3f} test accuracy after {time.perf_counter() - started:.1f} s")
    assert test_accuracy > 0.6
