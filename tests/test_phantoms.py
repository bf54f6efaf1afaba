"""gen.phantoms: procedural stained-cell images for demos and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from gen import phantoms
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.phantoms import PHANTOM_CLASSES, draw_phantom, write_phantoms


def file_bytes(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.png"))}


def test_writes_per_class_pngs_named_after_their_class(tmp_path: Path) -> None:
    counts = write_phantoms(tmp_path / "demo", per_class=3, seed=0)

    assert counts == dict.fromkeys(PHANTOM_CLASSES, 3)
    assert sorted(path.name for path in (tmp_path / "demo").iterdir()) == sorted(PHANTOM_CLASSES)
    for name in PHANTOM_CLASSES:
        files = sorted(path.name for path in (tmp_path / "demo" / name).iterdir())
        assert files == [f"{name}_0001.png", f"{name}_0002.png", f"{name}_0003.png"]
        with Image.open(tmp_path / "demo" / name / files[0]) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (96, 96))
    # Nothing of the work in progress is left beside the output.
    assert [path.name for path in tmp_path.iterdir()] == ["demo"]


def test_class_names_are_honest_about_being_phantoms() -> None:
    assert len(PHANTOM_CLASSES) == 4
    assert all(name.startswith("phantom_") for name in PHANTOM_CLASSES)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    write_phantoms(tmp_path / "one", per_class=2, seed=7, image_size=48)
    write_phantoms(tmp_path / "two", per_class=2, seed=7, image_size=48)
    write_phantoms(tmp_path / "three", per_class=2, seed=8, image_size=48)
    assert file_bytes(tmp_path / "one") == file_bytes(tmp_path / "two")
    different = file_bytes(tmp_path / "three")
    assert all(different[name] != data for name, data in file_bytes(tmp_path / "one").items())


def test_each_class_draws_the_same_first_images_whatever_the_count(tmp_path: Path) -> None:
    write_phantoms(tmp_path / "few", per_class=1, image_size=48)
    write_phantoms(tmp_path / "more", per_class=3, image_size=48)
    more = file_bytes(tmp_path / "more")
    assert all(more[name] == data for name, data in file_bytes(tmp_path / "few").items())


def measure(image: np.ndarray) -> dict[str, float]:
    """Plain statistics of one phantom, by colour alone."""
    red, green, blue = image.astype(int).transpose(2, 0, 1)
    nucleus = (red < 140) & (green < 120)  # dark purple
    cell = red < blue + 10  # anything not pink: nucleus and blue, grey or lilac cytoplasm
    granules = (red > green + 80) & (red > blue + 100)  # orange-red
    pieces, _ = ndimage.label(nucleus)
    piece_sizes = np.bincount(pieces.ravel())[1:]
    return {
        "nucleus_share_of_cell": nucleus.sum() / max(cell.sum(), 1),
        "nuclei": int((piece_sizes >= 10).sum()),
        "granules": granules.mean(),
    }


def test_classes_differ_in_nucleus_size_count_and_granules() -> None:
    rng = np.random.default_rng(0)
    measured = {name: [measure(draw_phantom(name, rng)) for _ in range(30)] for name in PHANTOM_CLASSES}

    def values(name: str, statistic: str) -> np.ndarray:
        return np.array([row[statistic] for row in measured[name]])

    # Small round cells are mostly nucleus, large lobed ones mostly cytoplasm: no overlap at all.
    small, two, large = (
        values(name, "nucleus_share_of_cell")
        for name in ("phantom_small_round", "phantom_binucleate", "phantom_large_lobed")
    )
    assert small.min() > two.max() and two.min() > large.max()
    assert np.mean(values("phantom_binucleate", "nuclei") == 2) >= 0.9
    for name in ("phantom_small_round", "phantom_large_lobed", "phantom_granular"):
        assert np.mean(values(name, "nuclei") == 1) >= 0.8, name
    granular = values("phantom_granular", "granules")
    for name in ("phantom_small_round", "phantom_large_lobed", "phantom_binucleate"):
        assert np.median(granular) > 10 * max(np.median(values(name, "granules")), 1e-3), name


def test_phantoms_look_like_a_stained_smear() -> None:
    image = draw_phantom("phantom_small_round", np.random.default_rng(1))
    corners = np.concatenate([image[:6, :6], image[-6:, -6:]]).reshape(-1, 3).astype(float)
    # Light background with a pink cast, a dark purple nucleus somewhere.
    assert corners.mean() > 170
    assert (image[..., 2].astype(int) - image[..., 0] > 20).any()
    assert image.min() < 100


def test_the_loader_reads_them_back(tmp_path: Path) -> None:
    write_phantoms(tmp_path, per_class=2, seed=3)
    data = load_image_folder(tmp_path)
    assert data.class_names == tuple(sorted(PHANTOM_CLASSES))
    assert data.images.shape == (8, 3, 64, 64)
    assert data.skipped == ()


def test_refuses_to_write_into_a_class_folder_that_holds_files(tmp_path: Path) -> None:
    mine = tmp_path / "phantom_granular" / "mine.txt"
    mine.parent.mkdir()
    mine.write_text("my notes")

    with pytest.raises(GenError, match="phantom_granular already exists"):
        write_phantoms(tmp_path, per_class=2)

    assert mine.read_text() == "my notes"
    assert [path.name for path in tmp_path.iterdir()] == ["phantom_granular"]
    assert [
        path.name for path in tmp_path.parent.iterdir() if path.name.startswith(f".{tmp_path.name}")
    ] == []


def test_an_interrupted_run_leaves_no_class_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []

    def failing_draw(class_name: str, rng: np.random.Generator, size: int = 96) -> np.ndarray:
        if len(drawn) == 5:  # partway through the second class
            raise KeyboardInterrupt
        drawn.append(class_name)
        return draw_phantom(class_name, rng, size)

    monkeypatch.setattr(phantoms, "draw_phantom", failing_draw)
    with pytest.raises(KeyboardInterrupt):
        write_phantoms(tmp_path / "demo", per_class=3)
    assert list((tmp_path / "demo").iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] == ["demo"]


def test_empty_class_folders_and_other_files_are_fine(tmp_path: Path) -> None:
    (tmp_path / "phantom_binucleate").mkdir()
    (tmp_path / "README.md").write_text("demo data")
    assert write_phantoms(tmp_path, per_class=1) == dict.fromkeys(PHANTOM_CLASSES, 1)
    assert (tmp_path / "phantom_binucleate" / "phantom_binucleate_0001.png").is_file()
    assert (tmp_path / "README.md").read_text() == "demo data"


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    write_phantoms(tmp_path, per_class=1)
    before = file_bytes(tmp_path)
    with pytest.raises(GenError, match="already exists"):
        write_phantoms(tmp_path, per_class=1, seed=1)
    assert file_bytes(tmp_path) == before


@pytest.mark.parametrize(("per_class", "image_size"), [(0, 96), (1, 16)])
def test_nonsense_sizes_are_user_errors(tmp_path: Path, per_class: int, image_size: int) -> None:
    with pytest.raises(GenError):
        write_phantoms(tmp_path, per_class=per_class, image_size=image_size)


def test_an_unknown_class_is_a_user_error() -> None:
    with pytest.raises(GenError, match="unknown phantom class"):
        draw_phantom("phantom_dragon", np.random.default_rng(0))
