"""gen.image_folder: any labelled image folder in, uint8 tensors out."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gen.errors import GenError
from gen.image_folder import (
    IMAGE_SIZE,
    check_class_name,
    check_distinct_class_names,
    hash_image_folder,
    load_image_folder,
)

PBC4_TRAIN = Path(__file__).resolve().parents[2] / "shared/data/pbc4/train"


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (80, 80)) -> Image.Image:
    return Image.new("RGB", size, colour)


def noise_image(seed: int, size: int = 64) -> Image.Image:
    """An image with no symmetry, so any flip, turn or warp of it shows."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def make_folder(root: Path, classes: dict[str, list[Image.Image]], suffix: str = ".png") -> Path:
    for name, images in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            image.save(root / name / f"{number:03d}{suffix}")
    return root


def load_one(tmp_path: Path, write: Callable[[Path], None]) -> torch.Tensor:
    """Load the single image ``write`` puts in class ``a`` (class ``b`` holds a filler)."""
    (tmp_path / "a").mkdir()
    write(tmp_path / "a")
    make_folder(tmp_path, {"b": [solid((0, 0, 0))]})
    data = load_image_folder(tmp_path)
    assert data.skipped == ()
    assert data.images.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and data.images.dtype == torch.uint8
    return data.images[data.labels == 0][0]


def colour_of(image: torch.Tensor) -> list[float]:
    return image.float().mean(dim=(1, 2)).tolist()


@pytest.mark.parametrize(
    ("name", "image", "expected"),
    [
        ("rgb.png", solid((10, 200, 30)), (10, 200, 30)),
        ("grey.png", Image.new("L", (70, 90), 77), (77, 77, 77)),
        ("palette.png", solid((200, 40, 160)).convert("P", palette=Image.Palette.ADAPTIVE), (200, 40, 160)),
        ("opaque.png", Image.new("RGBA", (80, 80), (30, 60, 90, 255)), (30, 60, 90)),
        # Transparency shows the white of an empty slide.
        ("clear.png", Image.new("RGBA", (80, 80), (30, 60, 90, 0)), (255, 255, 255)),
        ("half.png", Image.new("RGBA", (80, 80), (0, 0, 0, 128)), (127, 127, 127)),
        ("photo.jpg", solid((180, 90, 200), (200, 150)), (180, 90, 200)),
        ("scan.bmp", solid((5, 100, 250)), (5, 100, 250)),
        ("scan.tif", solid((120, 130, 140)), (120, 130, 140)),
        # 16-bit grey is scaled by its full range; Pillow's own conversion would clip it to 255.
        ("deep.png", Image.fromarray(np.full((80, 80), 128 * 257, np.uint16)), (128, 128, 128)),
        ("deep.tif", Image.fromarray(np.full((80, 80), 200 * 257, np.uint16)), (200, 200, 200)),
        ("dark.tif", Image.fromarray(np.full((80, 80), 1000, np.uint16)), (4, 4, 4)),
        ("float.tif", Image.fromarray(np.full((80, 80), 0.5, np.float32)), (128, 128, 128)),
    ],
)
def test_every_supported_format_and_mode_becomes_rgb_uint8(
    tmp_path: Path, name: str, image: Image.Image, expected: tuple[int, int, int]
) -> None:
    loaded = load_one(tmp_path, lambda folder: image.save(folder / name))
    assert colour_of(loaded) == pytest.approx(expected, abs=3)


def test_a_file_is_judged_by_its_content_not_its_extension(tmp_path: Path) -> None:
    loaded = load_one(
        tmp_path, lambda folder: solid((0, 0, 255)).save(folder / "really-a-png.jpg", format="PNG")
    )
    assert colour_of(loaded) == pytest.approx((0, 0, 255), abs=1)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored sideways (red left, blue right) with the tag a camera writes for "turn 90 clockwise".
    sideways = np.zeros((80, 80, 3), np.uint8)
    sideways[:, :40] = (255, 0, 0)
    sideways[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6

    def write(folder: Path) -> None:
        Image.fromarray(sideways).save(folder / "camera.jpg", exif=exif, quality=95)

    upright = load_one(tmp_path, write).float()
    assert upright[0, 8].mean() > 200 and upright[2, 8].mean() < 50  # red on top
    assert upright[2, -8].mean() > 200 and upright[0, -8].mean() < 50  # blue below


def test_wide_images_are_centre_cropped_not_squashed(tmp_path: Path) -> None:
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100] = wide[:, 200:] = (255, 0, 0)
    wide[:, 100:200] = (0, 0, 255)
    loaded = load_one(tmp_path, lambda folder: Image.fromarray(wide).save(folder / "wide.png"))
    red, green, blue = loaded.int()
    assert red.max() <= 8 and blue.min() >= 247


def test_tall_images_are_centre_cropped_too(tmp_path: Path) -> None:
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[100:200] = (0, 255, 0)
    loaded = load_one(tmp_path, lambda folder: Image.fromarray(tall).save(folder / "tall.png"))
    assert colour_of(loaded) == pytest.approx((0, 255, 0), abs=2)


def test_unreadable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    buffer = io.BytesIO()
    noise_image(0, 200).save(buffer, format="JPEG")
    (tmp_path / "a" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "b" / "notes.txt").write_text("stained on Tuesday")
    (tmp_path / "b" / "empty.png").write_bytes(b"")

    data = load_image_folder(tmp_path)

    assert data.skipped == (
        "a/truncated.jpg: damaged or truncated (OSError)",
        "b/empty.png: not a PNG, JPEG, BMP, TIFF image",
        "b/notes.txt: not a PNG, JPEG, BMP, TIFF image",
    )
    assert data.counts() == {"a": 1, "b": 1}


def test_a_decompression_bomb_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    Image.new("L", (400, 400)).save(tmp_path / "a" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 400x400 is then over twice the limit
    data = load_image_folder(tmp_path)
    assert data.skipped == ("a/huge.png: too many pixels for an image of its size (a decompression bomb?)",)


def test_class_folders_that_are_links_are_refused(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    (tmp_path / "data" / "c").symlink_to(tmp_path / "data" / "a")  # a class of duplicates
    with pytest.raises(GenError, match="class folder .*c is a link"):
        load_image_folder(tmp_path / "data")
    (tmp_path / "data" / "c").unlink()
    (tmp_path / "data" / "a" / "loop").symlink_to(tmp_path / "data")  # a folder link inside a class
    data = load_image_folder(tmp_path / "data")
    assert data.counts() == {"a": 1, "b": 1}
    assert data.skipped == ("a/loop: a link to a folder, not followed",)


def test_hidden_files_and_folders_and_loose_files_are_ignored(tmp_path: Path) -> None:
    make_folder(
        tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))], ".ipynb_checkpoints": [solid((0, 0, 0))]}
    )
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    make_folder(tmp_path / "a", {".thumbnails": [solid((9, 9, 9))]})
    solid((7, 7, 7)).save(tmp_path / "loose.png")

    data = load_image_folder(tmp_path)

    assert data.class_names == ("a", "b")
    assert data.counts() == {"a": 1, "b": 1}
    assert data.skipped == ()


def test_images_in_nested_folders_belong_to_their_class(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "a/batch2": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    assert load_image_folder(tmp_path).counts() == {"a": 2, "b": 1}


def test_labels_follow_sorted_class_names(tmp_path: Path) -> None:
    make_folder(
        tmp_path,
        {"zebra": [solid((0, 0, 200))] * 3, "apple": [solid((200, 0, 0))], "Mango": [solid((0, 200, 0))] * 2},
    )
    data = load_image_folder(tmp_path)
    assert data.class_names == ("Mango", "apple", "zebra")
    assert data.labels.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.labels.dtype == torch.int64
    assert data.counts() == {"Mango": 2, "apple": 1, "zebra": 3}
    # Each label sits beside its own class's images.
    assert [int(image.float().mean(dim=(1, 2)).argmax()) for image in data.images] == [1, 1, 0, 2, 2, 2]


def test_image_size_sets_the_side(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    assert load_image_folder(tmp_path, image_size=32).images.shape == (2, 3, 32, 32)


def test_a_missing_root_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(GenError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_a_file_as_root_is_a_user_error(tmp_path: Path) -> None:
    solid((0, 0, 0)).save(tmp_path / "one.png")
    with pytest.raises(GenError, match="is not a folder"):
        load_image_folder(tmp_path / "one.png")


@pytest.mark.parametrize("classes", [{}, {"only": [solid((0, 0, 0))]}])
def test_fewer_than_two_classes_says_how_many_were_found(tmp_path: Path, classes: dict) -> None:
    make_folder(tmp_path, classes)
    with pytest.raises(GenError, match=f"found {len(classes)} class folder"):
        load_image_folder(tmp_path)


def test_a_class_without_readable_images_is_named(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "empty_class" / "readme.txt").write_text("nothing here yet")
    with pytest.raises(GenError, match="empty_class holds no readable"):
        load_image_folder(tmp_path)


def test_an_unsafe_class_name_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "two\nlines": [solid((4, 5, 6))]})
    with pytest.raises(GenError, match="unsafe"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("name", ["", " padded", ".hidden", "a/b", "a\\b", "tab\there", "what?", "bell\a"])
def test_check_class_name_refuses(name: str) -> None:
    with pytest.raises(GenError, match="class name"):
        check_class_name(name)


# What a spreadsheet would run as a formula when it opens metadata.csv or settings.csv (OWASP's
# list: =, +, -, @, tab and carriage return at the start of a cell).
FORMULA_NAMES = ['=HYPERLINK("http://x","y")', "@SUM(1)", "-2+3", "+1", "\tx", "\rx", "=1"]


@pytest.mark.parametrize("name", FORMULA_NAMES)
def test_a_class_name_a_spreadsheet_would_run_is_refused(name: str) -> None:
    with pytest.raises(GenError, match=r"^class name .* must not start with "):
        check_class_name(name)


@pytest.mark.parametrize("name", ["x" * 101, "é" * 101, "\U0001f52c" * 51], ids=["ascii", "latin", "emoji"])
def test_a_class_name_too_long_for_its_file_names_is_refused(name: str) -> None:
    # 100 characters, and 200 bytes in UTF-8: a class folder's files are named <class>_NNNNNN.png
    # and must fit in the 255 bytes a file name may have.
    with pytest.raises(GenError, match=r"^class name '.{20}'\.\.\. is too long: "):
        check_class_name(name)


@pytest.mark.parametrize("name", ["x" * 100, "é" * 100, "\U0001f52c" * 50], ids=["ascii", "latin", "emoji"])
def test_a_class_name_of_the_longest_length_is_accepted(name: str) -> None:
    check_class_name(name)


@pytest.mark.parametrize("name", ["cyt_mast", "Lymphocyte (large)", "клітини", "ç-1", "a-2", "a=b"])
def test_check_class_name_accepts(name: str) -> None:
    check_class_name(name)


@pytest.mark.parametrize(
    "names",
    [["Mono", "mono"], ["caf\u00e9", "cafe\u0301"], ["STRASSE", "straße"], ["a", "Ǆ", "ǆ"]],
    ids=["case", "composed-decomposed", "case-folding", "title-case"],
)
def test_class_names_that_are_one_folder_somewhere_are_refused(names: list[str]) -> None:
    with pytest.raises(GenError, match=r"^class names .* and .* differ only in case or Unicode"):
        check_distinct_class_names(names)
    check_distinct_class_names(names[:1] + ["other"])


def test_class_folders_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    make_folder(tmp_path, {"caf\u00e9": [solid((1, 2, 3))], "cafe\u0301": [solid((4, 5, 6))]})
    with pytest.raises(GenError, match="differ only in case or Unicode normalisation"):
        load_image_folder(tmp_path)


def test_a_class_folder_named_like_a_formula_is_refused(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "=HYPERLINK(1)": [solid((4, 5, 6))]})
    with pytest.raises(GenError, match="must not start with"):
        load_image_folder(tmp_path)


def test_fingerprint_is_stable_and_follows_every_byte_and_name(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [noise_image(1), noise_image(2)], "b": [noise_image(3)]}, suffix=".bmp")
    first = load_image_folder(tmp_path).fingerprint
    assert len(first) == 64 and int(first, 16) >= 0
    assert load_image_folder(tmp_path, image_size=32).fingerprint == first
    assert hash_image_folder(tmp_path) == first

    # A BMP has no checksum, so one changed pixel byte still loads, and must still show.
    path = tmp_path / "a" / "001.bmp"
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert load_image_folder(tmp_path).fingerprint != first

    path.write_bytes(original)
    assert load_image_folder(tmp_path).fingerprint == first
    path.rename(tmp_path / "b" / "001.bmp")
    assert load_image_folder(tmp_path).fingerprint != first


def test_skipped_files_do_not_change_the_fingerprint(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [noise_image(1)], "b": [noise_image(2)]})
    before = load_image_folder(tmp_path).fingerprint
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert load_image_folder(tmp_path).fingerprint == before


def test_balance_tops_every_class_up_to_exactly_n(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [noise_image(seed) for seed in range(3)], "b": [noise_image(9)]})
    plain = load_image_folder(tmp_path)

    balanced = load_image_folder(tmp_path, balance=8, seed=1)

    assert balanced.counts() == {"a": 8, "b": 8}
    assert balanced.images.shape == (16, 3, IMAGE_SIZE, IMAGE_SIZE) and balanced.images.dtype == torch.uint8
    assert balanced.fingerprint == plain.fingerprint
    for label in (0, 1):
        originals = plain.images[plain.labels == label]
        topped_up = balanced.images[balanced.labels == label]
        assert torch.equal(topped_up[: len(originals)], originals)  # the real images come first, untouched
        for copy in topped_up[len(originals) :]:
            assert all(not torch.equal(copy, original) for original in originals)
            # An augmented copy still looks like its class: same overall colour statistics.
            assert abs(copy.float().mean() - originals.float().mean()) < 20


def test_balance_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [noise_image(seed) for seed in range(3)], "b": [noise_image(9)]})
    first = load_image_folder(tmp_path, balance=6, seed=4).images
    assert torch.equal(first, load_image_folder(tmp_path, balance=6, seed=4).images)
    assert not torch.equal(first, load_image_folder(tmp_path, balance=6, seed=5).images)


def test_balance_keeps_every_image_of_a_larger_class(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": [noise_image(seed) for seed in range(5)], "b": [noise_image(9)]})
    assert load_image_folder(tmp_path, balance=3).counts() == {"a": 5, "b": 3}


@pytest.mark.parametrize("balance", [0, -2])
def test_balance_below_one_is_a_user_error(tmp_path: Path, balance: int) -> None:
    make_folder(tmp_path, {"a": [solid((1, 2, 3))], "b": [solid((4, 5, 6))]})
    with pytest.raises(GenError, match="balance"):
        load_image_folder(tmp_path, balance=balance)


def test_the_real_pbc4_training_set_loads() -> None:
    if not PBC4_TRAIN.is_dir():
        pytest.skip(f"the pbc4 data set is not at {PBC4_TRAIN} (it lives outside the repository)")
    data = load_image_folder(PBC4_TRAIN)
    assert data.class_names == ("basophil", "eosinophil", "lymphocyte", "monocyte")
    assert data.counts() == dict.fromkeys(data.class_names, 200)
    assert data.images.shape == (800, 3, 64, 64) and data.images.dtype == torch.uint8
    assert data.skipped == ()
    # Stained cells on a light background: bright on average, with dark purple nuclei somewhere.
    assert 150 < data.images.float().mean() < 240
    assert (data.images.float().amin(dim=(1, 2, 3)) < 120).all()
