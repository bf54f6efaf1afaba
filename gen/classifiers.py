"""Classifiers as a module: train an image classifier on a data set, record it, label images.

    from gen.classifiers import ClassifierSettings, classify_images, train_classifier
    trained = train_classifier("cells/", ClassifierSettings(arch="resnet18", epochs=20),
                               name="cells-resnet", database="sqlite:///gen.db")
    for prediction in classify_images(["new-cells/"], "cells-resnet", database="sqlite:///gen.db"):
        print(prediction.file, prediction.label, prediction.probability)

Three kinds of network (``--arch``), each recorded in ``classifiers.architecture`` with a
``kind`` and its ``classes``, so whatever the database says was trained can be rebuilt from it:

- ``simple``: the project's own small CNN (gen.metrics.domain; rows without a kind, a report's
  cached domain CNNs, are this kind too);
- a torchvision ResNet (``resnet18``, ``resnet34``, ``resnet50``), built with ``weights=None``:
  nothing is ever downloaded. ``--weights PATH`` starts it from a local state dict instead
  (torchvision's own files, e.g. resnet18-f37072fd.pth, or one gen saved); a head for another
  number of classes is left freshly initialised (fine-tuning). Its input, the project's [-1, 1]
  images, is rescaled to ImageNet's mean and standard deviation inside the network;
- ``searched:ID``: the genome of a classifier found by ``gen search --stage classifier``
  (gen.search.classifier_net), trained afresh on this data.

All three have the interface of gen.metrics.domain.DomainClassifier (``config``, ``features``,
``classifier``, ``body``), so they train with the same loop (domain.train_domain_classifier:
seeded, random flips and quarter turns, cosine-decayed learning rate, batch-norm statistics
recomputed at the end), predict with domain_features_and_probabilities, and Grad-CAM and the
report's utility figures work on them unchanged.

The data set's images are split as the classifier search splits them (seeded, stratified,
``validation`` of each class held out); the history holds, per epoch, the training loss and
accuracy and the validation accuracy (batch-norm running statistics of that moment), and the
recorded accuracy, per-class F1 and confusion matrix are the final network's on the held-out
images. The weights file is never overwritten: a name claims ``OUT/<name>.pt``, else the first
free ``OUT/classifier-<n>.pt``; the row comes after the file, and a failed row removes it.
"""

from __future__ import annotations

import csv
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from torch import nn
from tqdm import tqdm

from db import classifiers as classifier_rows
from db.names import as_id, check_name
from gen.errors import GenError
from gen.metrics import domain
from gen.search import classifier_net
from gen.text import FORMULA_STARTS

if TYPE_CHECKING:
    from gen.image_folder import LabelledImages

SIMPLE = "simple"
TORCHVISION = "torchvision"
SEARCHED = "searched"
TORCHVISION_ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
ARCHITECTURES = (SIMPLE, *TORCHVISION_ARCHITECTURES, f"{SEARCHED}:ID")
DEFAULT_OUT = Path("classifiers")
# torchvision's ImageNet weights expect images standardised with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREDICTION_BATCH = 256
# A cell a spreadsheet would read as a formula starts with one of these (OWASP, CSV injection).


# The networks


@dataclass(frozen=True)
class TorchvisionConfig:
    name: str
    num_classes: int
    feature_dim: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": TORCHVISION,
            "name": self.name,
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }


class TorchvisionClassifier(nn.Module):
    """A torchvision ResNet as ``body`` (its layers up to layer4, under torchvision's names),
    global average pooling and ``classifier`` (its fc): torchvision's state dicts map onto it
    key for key (``conv1.weight`` -> ``body.conv1.weight``, ``fc.*`` -> ``classifier.*``)."""

    def __init__(self, name: str, num_classes: int):
        super().__init__()
        from gen._torchvision import torchvision

        if name not in TORCHVISION_ARCHITECTURES:
            raise GenError(
                f"unknown torchvision architecture {name!r}; "
                f"choose one of {', '.join(TORCHVISION_ARCHITECTURES)}."
            )
        network = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        self.config = TorchvisionConfig(name, num_classes, network.fc.in_features)
        layers = [(key, module) for key, module in network.named_children() if key not in ("avgpool", "fc")]
        self.body = nn.Sequential(OrderedDict(layers))
        self.classifier = network.fc
        # [-1, 1] -> ImageNet's standardisation, so that ImageNet weights see what they expect.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * self.scale + self.shift).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def parse_arch(text: str) -> tuple[str, int | None]:
    """--arch as (simple | a torchvision name | searched, the searched classifier's id or None)."""
    if text == SIMPLE or text in TORCHVISION_ARCHITECTURES:
        return text, None
    prefix = f"{SEARCHED}:"
    if text.startswith(prefix) and text[len(prefix) :].isascii() and text[len(prefix) :].isdigit():
        return SEARCHED, as_id(text[len(prefix) :])  # 1..2**63-1, else one sentence
    raise GenError(
        f"--arch {text!r} must be {', '.join(ARCHITECTURES[:-1])} or searched:ID (a classifier "
        "found by gen search --stage classifier)."
    )


def kind_of(architecture: dict[str, Any]) -> str:
    return architecture.get("kind", SIMPLE)


def build_network(architecture: dict[str, Any], seed: int = 0) -> nn.Module:
    """A freshly initialised network of ``architecture`` (a classifiers row's, or one made by
    ``new_architecture``); the same seed gives the same weights."""
    kind = kind_of(architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == SIMPLE:
            return domain.DomainClassifier(domain.DomainClassifierConfig.from_dict(architecture))
        if kind == TORCHVISION:
            return TorchvisionClassifier(str(architecture["name"]), int(architecture["num_classes"]))
        if kind == classifier_net.ARCHITECTURE_KIND:
            return classifier_net.SearchedClassifier(
                classifier_net.SearchedClassifierConfig.from_dict(architecture)
            )
    raise GenError(
        f"unknown kind of classifier {kind!r}; this gen builds {SIMPLE}, {TORCHVISION} and searched ones."
    )


def describe_architecture(architecture: dict[str, Any]) -> str:
    """A row's architecture in a few words: simple, resnet18, or searched {N, C, cells, pool}."""
    kind = kind_of(architecture)
    if kind == TORCHVISION:
        return str(architecture.get("name", TORCHVISION))
    if kind == classifier_net.ARCHITECTURE_KIND:
        return f"searched {architecture.get('notation', '')}".strip()
    return kind


def architecture_of(model: nn.Module, class_names: Sequence[str]) -> dict[str, Any]:
    """What classifiers.architecture records: the network's config, its kind and its classes."""
    return {"kind": SIMPLE} | model.config.to_dict() | {"classes": list(class_names)}


def new_architecture(arch: str, num_classes: int, searched: dict[str, Any] | None = None) -> dict[str, Any]:
    """The architecture of a new network for --arch (``searched``: the searched row's)."""
    if arch == SIMPLE:
        return {"kind": SIMPLE} | domain.DomainClassifierConfig(num_classes=num_classes).to_dict()
    if arch in TORCHVISION_ARCHITECTURES:
        return {"kind": TORCHVISION, "name": arch, "num_classes": num_classes}
    if searched is None:
        raise ValueError("a searched architecture needs the searched classifier's row")
    return dict(searched) | {"num_classes": num_classes}


def _state_dict_in(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file: a plain one (torchvision's) or one gen saved."""
    if not path.is_file():
        raise GenError(f"weights file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a bad file; all mean the same here
        raise GenError(f"{path} is not a PyTorch weights file ({type(error).__name__}).") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise GenError(f"{path} does not hold a state dict (names of tensors).")
    return state


def load_initial_weights(model: nn.Module, path: str | Path) -> str | None:
    """Start ``model`` from the state dict in ``path`` (--weights); returns a note when its head
    was for another number of classes and is left freshly initialised."""
    path = Path(path)
    state = _state_dict_in(path)
    if isinstance(model, TorchvisionClassifier) and not any(
        k.startswith(("body.", "classifier.")) for k in state
    ):
        state = {(f"classifier.{k[3:]}" if k.startswith("fc.") else f"body.{k}"): v for k, v in state.items()}
    own = model.state_dict()
    other_head = {
        k for k, v in state.items() if k.startswith("classifier.") and k in own and v.shape != own[k].shape
    }
    state = {k: v for k, v in state.items() if k not in other_head}
    unfit = sorted(k for k, v in state.items() if k not in own or v.shape != own[k].shape)
    missing = sorted(set(own) - set(state) - {k for k in own if k.startswith("classifier.") and other_head})
    if unfit or missing:
        what = f"{len(unfit)} of its tensors do not fit" if unfit else f"it lacks {len(missing)} tensors"
        raise GenError(
            f"{path} does not hold weights for this {model.config.to_dict().get('name', 'network')}: "
            f"{what} (first: {(unfit or missing)[0]})."
        )
    model.load_state_dict(state, strict=False)
    if other_head:
        return f"the head in {path} is for another number of classes; it starts freshly initialised."
    return None


def save_network(model: nn.Module, architecture: dict[str, Any], path: Path) -> None:
    """Weights and architecture, written whole: to a temporary file first, then linked to
    ``path``, which must not exist (nothing is overwritten; FileExistsError if it does)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    state = {
        "format": "gen.classifier/1",
        "architecture": architecture,
        "state_dict": {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()},
    }
    try:
        torch.save(state, temporary)
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_network(
    path: str | Path, architecture: dict[str, Any], device: str | torch.device = "cpu"
) -> nn.Module:
    """The network of ``architecture`` with the weights in ``path`` (any kind's file), in eval mode."""
    model = build_network(architecture)
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
    except Exception as error:  # a bad file raises many types; all mean the same here
        raise GenError(f"{path} does not hold this classifier's weights ({type(error).__name__}).") from None
    return model.to(device, memory_format=torch.channels_last).eval()


# Training


@dataclass(frozen=True)
class ClassifierSettings:
    arch: str = SIMPLE  # simple, resnet18 (resnet34, resnet50) or searched:ID
    epochs: int = 20
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # or sgd (momentum 0.9)
    batch_size: int = 64
    validation: float = 0.2  # share of each class held out
    seed: int = 0
    weights: str | None = None  # a local state dict to start from


@dataclass(frozen=True)
class TrainedClassifier:
    id: int | None  # None when no database was given
    name: str | None
    path: Path
    sha256: str
    architecture: dict[str, Any]
    accuracy: float  # on the held-out images
    macro_f1: float
    per_class_f1: dict[str, float]
    confusion_matrix: list[list[int]]
    history: list[dict[str, float]]
    settings: dict[str, Any]
    images_per_second: float
    skipped: tuple[str, ...] = ()  # files of the folder that are not readable images
    notes: tuple[str, ...] = field(default=())


def _engine(database: Engine | str | None) -> Engine | None:
    from gen.provenance import engine_for

    return None if database is None else engine_for(database)


def searched_architecture(engine: Engine | None, classifier: int) -> dict[str, Any]:
    """The architecture of classifier ``classifier``, which a classifier search must have found."""
    if engine is None:
        raise GenError("--arch searched:ID reads the searched classifier from the database; give one.")
    with Session(engine) as session:
        row = classifier_rows.get_classifier(session, classifier)
    if kind_of(row.architecture) != classifier_net.ARCHITECTURE_KIND:
        raise GenError(
            f"classifier {row.id} is a {kind_of(row.architecture)} one; --arch searched:ID takes a "
            "classifier found by gen search --stage classifier."
        )
    return row.architecture


def weights_path(out: Path, name: str | None) -> Path:
    """OUT/<name>.pt, refused when it exists; else the first free OUT/classifier-<n>.pt."""
    if name is not None:
        path = out / f"{name}.pt"
        if path.exists():
            raise GenError(f"{path} exists already; pick another --name or --out (nothing is overwritten).")
        return path
    number = 1
    while (out / f"classifier-{number}.pt").exists():
        number += 1
    return out / f"classifier-{number}.pt"


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices): ``fraction`` of every class held out (at least
    one image, at least one left to train on), drawn with ``seed``. The classifier search
    splits its data the same way (gen.search.classifier_stage)."""
    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for label in sorted(set(labels.tolist())):
        members = (labels == label).nonzero().flatten()
        if len(members) < 2:
            raise GenError("a classifier needs at least 2 images of every class (train and validation).")
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = min(len(members) - 1, max(1, round(fraction * len(members))))
        validation.append(members[:held_out])
        train.append(members[held_out:])
    return torch.cat(train).sort().values, torch.cat(validation).sort().values


def train_classifier(
    data: str | Path,
    settings: ClassifierSettings,
    *,
    name: str | None = None,
    out: str | Path = DEFAULT_OUT,
    data_set: str | None = None,
    database: Engine | str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainedClassifier:
    """Train a classifier on the image folder ``data`` and, given a database, record it (linked
    to the registered data set ``data_set``, else to this folder's, registered now if new).

    Everything a user can get wrong (the architecture, the name, --weights, the data) is checked
    before the first epoch; the weights file and the row are written only at the end.
    """
    from gen.image_folder import load_image_folder
    from gen.runtime import resolve_device

    arch, searched_id = _checked_arch_and_optimizer(settings)
    torch_device = resolve_device(device)
    engine = _engine(database)
    out = Path(out)
    _check_name(engine, name, out)
    searched = searched_architecture(engine, searched_id) if searched_id is not None else None

    images = load_image_folder(data, progress=progress)
    if len(images.class_names) < 2:
        raise GenError(f"a classifier needs at least 2 classes; {data} has {len(images.class_names)}.")
    train_index, validation_index = stratified_split(images.labels, settings.validation, settings.seed)
    class_names = list(images.class_names)
    model = build_network(new_architecture(arch, len(class_names), searched), settings.seed)
    architecture = architecture_of(model, class_names)
    weights, notes = _initial_weights(model, settings.weights)
    dataset_id, note = _data_set_of(engine, data_set, data, images)
    notes += [note] if note else []

    validation_images = images.images[validation_index]
    validation_labels = images.labels[validation_index].numpy()
    started = time.perf_counter()
    model, history = _fit(
        model, images, train_index, (validation_images, validation_labels), settings, torch_device, progress
    )
    seconds = time.perf_counter() - started
    scored, f1 = _held_out_scores(model, (validation_images, validation_labels), class_names, torch_device)
    recorded_settings = _recorded_settings(
        settings, weights, searched_id, data, (len(train_index), len(validation_index)), torch_device
    )
    return _save_and_record(
        TrainedClassifier(
            id=None,
            name=name,
            path=Path(),
            sha256="",
            architecture=architecture,
            accuracy=scored["accuracy"],
            macro_f1=scored["macro_f1"],
            per_class_f1=f1,
            confusion_matrix=scored["confusion_matrix"],
            history=history,
            settings=recorded_settings,
            images_per_second=len(train_index) * settings.epochs / seconds if seconds > 0 else 0.0,
            skipped=images.skipped,
            notes=tuple(notes),
        ),
        model,
        out,
        engine,
        images.fingerprint,
        dataset_id,
    )


def _checked_arch_and_optimizer(settings: ClassifierSettings) -> tuple[str, int | None]:
    """--arch as parse_arch reads it, once the optimiser is known too."""
    arch, searched_id = parse_arch(settings.arch)
    if settings.optimizer not in domain.OPTIMIZERS:
        raise GenError(
            f"unknown optimiser {settings.optimizer!r}; choose one of {', '.join(domain.OPTIMIZERS)}."
        )
    return arch, searched_id


def _check_name(engine: Engine | None, name: str | None, out: Path) -> None:
    """The name is a valid one, no classifier has it yet, and its weights file is free."""
    if name is not None:
        check_name(name, "classifier")
        if engine is not None:
            with Session(engine) as session:
                classifier_rows.check_classifier_name(session, name)
    weights_path(out, name)  # refused now rather than after training


def _initial_weights(model: nn.Module, weights: str | None) -> tuple[dict[str, str] | None, list[str]]:
    """Start ``model`` from --weights, if given: (the file's path and SHA-256 as recorded, notes)."""
    if weights is None:
        return None, []
    from gen.checkpoint import file_sha256

    note = load_initial_weights(model, weights)
    recorded = {"path": str(Path(weights).resolve()), "sha256": file_sha256(Path(weights))}
    return recorded, [note] if note else []


def _data_set_of(
    engine: Engine | None, data_set: str | None, data: str | Path, images: LabelledImages
) -> tuple[int | None, str | None]:
    """The registered data set the classifier is linked to (registered now if new) and a note;
    none without a database."""
    from gen.dataset_registry import dataset_for_run

    if engine is None:
        return None, None
    with Session(engine) as session:
        return dataset_for_run(
            session, data_set, data, images.fingerprint, images.class_names, images.skipped
        )


def _held_out_scores(
    model: nn.Module,
    validation: tuple[torch.Tensor, np.ndarray],
    class_names: list[str],
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The final network on the held-out images: accuracy, macro F1 and confusion matrix, and
    the F1 of each class."""
    from gen.metrics import utility

    validation_images, validation_labels = validation
    _, probabilities = domain.domain_features_and_probabilities(model, validation_images, device=device)
    scored = utility.evaluate_predictions(probabilities, validation_labels, class_names)
    f1 = dict(
        zip(class_names, utility.per_class_f1(np.array(scored["confusion_matrix"])).tolist(), strict=True)
    )
    return scored, f1


def _recorded_settings(
    settings: ClassifierSettings,
    weights: dict[str, str] | None,
    searched_id: int | None,
    data: str | Path,
    split: tuple[int, int],
    device: torch.device,
) -> dict[str, Any]:
    """What classifiers.settings records: the settings, where the weights started and the data."""
    return {
        "arch": settings.arch,
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "optimizer": settings.optimizer,
        "batch_size": settings.batch_size,
        "validation": settings.validation,
        "seed": settings.seed,
        "weights": weights,
        "searched_from": searched_id,
        "data": str(Path(data).resolve()),
        "train_images": split[0],
        "validation_images": split[1],
        "device": str(device),
    }


def _fit(
    model: nn.Module,
    images: LabelledImages,
    train_index: torch.Tensor,
    validation: tuple[torch.Tensor, np.ndarray],
    settings: ClassifierSettings,
    device: torch.device,
    progress: bool,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """The trained network and its history: per epoch, the training figures and the accuracy on
    the held-out ``validation`` (images, labels)."""
    validation_images, validation_labels = validation
    history: list[dict[str, float]] = []

    def validate(epoch: int, figures: dict[str, float]) -> dict[str, float]:
        _, probabilities = domain.domain_features_and_probabilities(model, validation_images, device=device)
        accuracy = float((probabilities.argmax(1) == validation_labels).mean())
        history.append({"epoch": epoch, **figures, "validation_accuracy": accuracy})
        return {"val_accuracy": accuracy}

    model = domain.train_domain_classifier(
        images.images[train_index],
        images.labels[train_index],
        len(images.class_names),
        epochs=settings.epochs,
        seed=settings.seed,
        device=device,
        progress=progress,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        model=model,
        optimizer=settings.optimizer,
        on_epoch=validate,
        description=f"classifier {settings.arch}",
    )
    return model, history


def _save_and_record(
    trained: TrainedClassifier,
    model: nn.Module,
    out: Path,
    engine: Engine | None,
    fingerprint: str,
    dataset_id: int | None,
) -> TrainedClassifier:
    """The weights file (claimed without overwriting anything), then the row; a row that cannot
    be written takes the file with it."""
    from dataclasses import replace

    from gen.checkpoint import file_sha256

    out.mkdir(parents=True, exist_ok=True)
    while True:
        path = weights_path(out, trained.name).resolve()
        try:
            save_network(model, trained.architecture, path)
            break
        except FileExistsError:
            if trained.name is not None:
                raise GenError(
                    f"{path} appeared while training; pick another --name (nothing is overwritten)."
                ) from None
    trained = replace(trained, path=path, sha256=file_sha256(path))
    if engine is None:
        return trained
    try:
        with Session(engine) as session:
            classifier_id = classifier_rows.record_classifier(
                session,
                dataset_fingerprint=fingerprint,
                path=str(path),
                sha256=trained.sha256,
                architecture=trained.architecture,
                accuracy=trained.accuracy,
                dataset_id=dataset_id,
                name=trained.name,
                settings=trained.settings,
                history=trained.history,
                per_class_f1=trained.per_class_f1,
                confusion_matrix=trained.confusion_matrix,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return replace(trained, id=classifier_id)


# Labelling images


@dataclass(frozen=True)
class Prediction:
    file: str
    label: str
    probability: float  # the classifier's softmax probability of that label


@dataclass(frozen=True)
class RecordedClassifier:
    id: int
    name: str | None
    class_names: tuple[str, ...]
    model: nn.Module


def load_recorded(
    engine: Engine, reference: str | int, device: str | torch.device = "cpu"
) -> RecordedClassifier:
    """A recorded classifier (id or name), its weights checked against the row's SHA-256."""
    from gen.provenance import recorded_classifier

    classifier_id, path, architecture = recorded_classifier(engine, reference)
    classes = architecture.get("classes")
    if not classes:
        raise GenError(
            f"classifier {classifier_id} does not record its class names (a report's cached domain CNN); "
            "label images with one trained by gen classifiers train."
        )
    with Session(engine) as session:
        name = classifier_rows.get_classifier(session, classifier_id).name
    return RecordedClassifier(classifier_id, name, tuple(classes), load_network(path, architecture, device))


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files to label: each file as named, each folder's files (below it, hidden ones left out)."""
    from gen.image_folder import _files_in

    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += _files_in(item)
        elif item.exists():
            files.append(item)
        else:
            raise GenError(f"{item} does not exist.")
    return files


def predict(
    model: nn.Module,
    class_names: Sequence[str],
    files: Sequence[Path],
    *,
    batch_size: int = PREDICTION_BATCH,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_skipped: Callable[[str], None] | None = None,
) -> Iterator[Prediction]:
    """Label ``files`` batch by batch (read as training reads images: centred square, 64x64),
    streaming: a folder of any size needs one batch in memory. Files that are not readable
    images are passed to ``on_skipped`` as "path: why"."""
    from gen.image_folder import IMAGE_SIZE, _read_image

    bar = tqdm(total=len(files), desc="classifying", unit="image", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            read = list(pool.map(lambda path: _read_image(path, IMAGE_SIZE)[1], batch))
            bar.update(len(batch))
            kept = [
                (path, pixels)
                for path, pixels in zip(batch, read, strict=True)
                if not isinstance(pixels, str)
            ]
            if on_skipped is not None:
                for path, why in zip(batch, read, strict=True):
                    if isinstance(why, str):
                        on_skipped(f"{path}: {why}")
            if not kept:
                continue
            images = (
                torch.from_numpy(np.stack([pixels for _, pixels in kept])).permute(0, 3, 1, 2).contiguous()
            )
            _, probabilities = domain.domain_features_and_probabilities(model, images, device=device)
            for (path, _), row in zip(kept, probabilities, strict=True):
                label = int(row.argmax())
                yield Prediction(str(path), class_names[label], float(row[label]))


def classify_images(
    inputs: Sequence[str | Path],
    classifier: str | int,
    *,
    database: Engine | str,
    device: str = "auto",
    progress: bool = True,
    on_skipped: Callable[[str], None] | None = None,
) -> Iterator[Prediction]:
    """Label the images in ``inputs`` (files and folders) with a recorded classifier."""
    from gen.runtime import resolve_device

    torch_device = resolve_device(device)
    files = image_files(inputs)
    recorded = load_recorded(_engine(database), classifier, torch_device)
    yield from predict(
        recorded.model,
        recorded.class_names,
        files,
        device=torch_device,
        progress=progress,
        on_skipped=on_skipped,
    )


def csv_cell(value: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading = + - @ tab or CR gets a quote.
    Unlike gen.text.csv_cell, a carriage return is kept: a label or file name is shown as it is."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def write_predictions_csv(predictions: Iterable[Prediction], path: Path) -> int:
    """file,label,probability rows, written whole to ``path`` (which must not exist) or not at
    all; returns the rows written."""
    if path.exists():
        raise GenError(f"{path} exists already; choose another --csv file (nothing is overwritten).")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["file", "label", "probability"])
            for prediction in predictions:
                writer.writerow(
                    [csv_cell(prediction.file), csv_cell(prediction.label), f"{prediction.probability:.6f}"]
                )
                rows += 1
        if rows == 0:
            raise GenError(f"no readable image to label; {path} was not written.")
        os.link(temporary, path)
    except FileExistsError:
        raise GenError(f"{path} appeared while classifying; nothing was written to it.") from None
    finally:
        temporary.unlink(missing_ok=True)
    return rows
