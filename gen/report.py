"""A model's quality report: every figure the source method reported, measured the same way.

The synthetic side is generated afresh from the model's checkpoint (seeded, so a report can be
repeated); the real side is a held-out folder (``--real``). Figures:

- domain FID, KID and IS, overall and per class, from a small CNN trained on the model's
  training classes (cached per data set fingerprint and recorded in ``classifiers``). FID and
  KID are normalised: computed on features z-scored with the real training images' statistics
  (``gen.metrics.normalised``), so they do not depend on the network's scale, and each comes
  beside its floor, the same figure between real training and real held-out images;
- near copies (``gen.metrics.near_copies``): the share of synthetic images closer to a
  training image, in domain features or in pixels, than 99% of real held-out images come,
  per class and overall, with a grid of the closest synthetic/training pairs per class;
- two-sample AUC (``gen.metrics.two_sample``): how well a small CNN tells synthetic images
  from real held-out ones of the same class (0.5: not at all, 1.0: always), per class and
  overall, with a grid per class of the images it found most and least synthetic;
- Inception FID (pytorch-fid's network and published weights) when the weights are present;
- per-class colour-histogram KL, real against synthetic (150 against 150), beside its floor:
  the same KL between real training and real held-out images of the class; and the colour
  spread of the same images (how much each image's mean colour varies, synthetic / real: 1 is
  as varied as real images), beside the same ratio between real training and held-out images;
- classifier utility (optional): one classifier trained on real, synthetic, and both; by
  default the domain CNN's architecture, or (``utility_classifier``, ``gen report --classifier
  ID``) a recorded classifier's, e.g. one found by ``gen search --stage classifier``: its
  architecture is rebuilt from the row and trained in each regime from the same seeded
  initialisation (so the regimes stay comparable), and its recorded weights, as found, are
  scored on the held-out images too (``accuracy_recorded_classifier``);
- Grad-CAM (optional, ``gen.metrics.gradcam``): the real-only utility classifier's class
  activation maps over real and synthetic images, a grid per class, and how alike the mean
  maps of the two are (Pearson correlation), per class and overall;
- curated beside uncurated (optional, ``curated_keep_best``, ``gen report --curated F``): the
  same number of images per class kept as ``gen sample --keep-best F`` keeps them
  (gen.curation), measured by this report's own classifiers, never the curating one (another
  seed, another split): ``curated_``-prefixed domain accuracy on synthetic, domain FID and
  two-sample AUC, shown in report.md beside the uncurated figures.

Each figure becomes a ``reports`` row and a line of report.json / report.md, beside the plots.

A report is a list of steps (``_Measure.run``), each a function beside its metric module
(``near_copies.near_copy_figures``, ``histogram.histogram_figures`` ...) that adds its
figures, notes and plots to a ``gen.metrics.figures.Report``; what stays here only glues
metrics together (the domain step, the curated and recorded-classifier figures). Imports flow
one way: this module takes the metrics, gen.sample and gen.classifiers, and none of them (nor
gen.evaluation, which shares the cached domain classifier) imports it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gen.checkpoint import SamplingState, file_sha256, load_for_sampling
from gen.errors import GenError
from gen.image_folder import LabelledImages, load_image_folder
from gen.metrics import (
    domain,
    gradcam,
    histogram,
    inception,
    inception_score,
    near_copies,
    normalised,
    two_sample,
    utility,
)
from gen.metrics.figures import Report, ReportSettings
from gen.metrics.utility import LabelledSet
from gen.runtime import resolve_device
from gen.sample import generate, load_generator

# on_classifier(path, sha256, architecture, accuracy, fingerprint): a new domain classifier was trained.
OnClassifier = Callable[[Path, str, dict[str, Any], float, str], None]
DEFAULT_SETTINGS = ReportSettings()


@dataclass(frozen=True)
class UtilityClassifier:
    """A recorded classifier for the utility figures: its row's id and architecture, and its
    weights file (already checked against the row's SHA-256)."""

    id: int
    path: Path
    architecture: dict[str, Any]


def _align(real: LabelledImages, class_names: tuple[str, ...], what: str) -> LabelledSet:
    """Images and labels of a real folder, relabelled to the model's label order."""
    missing = [name for name in class_names if name not in real.class_names]
    if missing:
        raise GenError(
            f"the {what} folder has no class {missing[0]!r}; the model's classes: {', '.join(class_names)}."
        )
    mapping = torch.tensor(
        [class_names.index(name) if name in class_names else -1 for name in real.class_names]
    )
    labels = mapping[real.labels]
    keep = labels >= 0
    return real.images[keep], labels[keep]


class _Steps:
    """One progress line on stderr for the report as a whole: which step runs, how many are done
    and for how long (the steps that train or embed many images show their own bars too)."""

    def __init__(self, names: list[str], enabled: bool) -> None:
        self._bar = tqdm(total=len(names), unit="step", disable=not enabled, dynamic_ncols=True)
        self._started = False

    def start(self, name: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"report: {name}")

    def close(self, finished: bool = True) -> None:
        if self._started and finished:
            self._bar.update(1)
        self._bar.close()


def report_steps(settings: ReportSettings, has_train: bool, has_weights: bool) -> list[str]:
    """The names of the steps make_report runs with these settings, in order."""
    return [
        "generating synthetic images",
        *(["domain classifier and features", "near copies"] if has_train else []),
        "two-sample test",
        *(["Inception FID"] if has_weights else []),
        "colour histograms",
        *(["utility classifiers"] if settings.utility else []),
        *(["Grad-CAM"] if settings.gradcam else []),
    ]


def _synthetic(state: SamplingState, n: int, seed: int, device: torch.device) -> LabelledSet:
    generator = load_generator(state, device)
    images, labels = [], []
    for label in range(len(state.class_names)):
        for start in range(0, n, 256):
            indices = list(range(start, min(n, start + 256)))
            images.append(generate(generator, seed, label, indices, device))
            labels.append(torch.full((len(indices),), label))
    return torch.cat(images), torch.cat(labels)


def make_report(
    checkpoint: str | Path | dict,
    real_dir: str | Path,
    train_dir: str | Path | None,
    out: str | Path,
    *,
    model_id: int | None = None,
    settings: ReportSettings = DEFAULT_SETTINGS,
    fid_weights: str | Path | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    on_classifier: OnClassifier | None = None,
    utility_classifier: UtilityClassifier | None = None,
) -> Report:
    """Measure a checkpoint against held-out real images; write report.json, report.md and plots.

    ``train_dir`` holds the real training images (for the domain classifier, the histogram
    floor and classifier utility); without it those figures are left out and a note says so.
    ``on_classifier(path, sha256, architecture, accuracy, fingerprint)`` is called when a new
    domain classifier was trained (the CLI records it in the database). ``utility_classifier``
    replaces the utility figures' architecture (and turns them on).
    """
    out = Path(out)
    if out.exists() and not force:
        raise GenError(f"{out} already exists; pass --force to replace it or choose another --out.")
    torch_device = resolve_device(device)
    if utility_classifier is not None:
        settings = replace(settings, utility=True, utility_classifier=utility_classifier.id)
    weights = inception.find_fid_weights(fid_weights)  # a wrong path is said before minutes of work
    state = load_for_sampling(checkpoint)
    class_names = state.class_names
    report = Report(
        model_id=model_id,
        checkpoint=str(state.path),
        iteration=state.iteration,
        class_names=class_names,
        settings=asdict(settings) | {"real": str(Path(real_dir).resolve()), "train": str(train_dir or "")},
    )
    real = load_image_folder(real_dir)
    real_images, real_labels = _align(real, class_names, "--real")
    train = load_image_folder(train_dir) if train_dir else None
    if train is None and settings.gradcam:
        raise GenError("--gradcam needs the real training images: pass --train DIR.")
    if train is None and settings.curated_keep_best is not None:
        raise GenError("--curated needs the real training images: pass --train DIR.")
    steps = _Steps(report_steps(settings, train is not None, weights is not None), progress)
    steps.start("generating synthetic images")
    synthetic = _synthetic(state, settings.n_per_class, settings.seed, torch_device)
    if train is not None and train.fingerprint == real.fingerprint:
        raise GenError("--real and the training folder hold the same images; evaluate on held-out images.")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed into place: never half a report folder.
        temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as error:
        raise GenError(f"cannot write a report under {out.parent}: {error.strerror}.") from None
    try:
        images = _ReportImages(
            real=(real_images, real_labels),
            synthetic=synthetic,
            train=_align(train, class_names, "training") if train is not None else None,
            real_fingerprint=real.fingerprint,
            train_fingerprint=train.fingerprint if train is not None else None,
        )
        measure = _Measure(report, temporary, steps, images, settings, torch_device, progress)
        measure.run(weights, checkpoint, train_dir, on_classifier, utility_classifier)
        steps.close()
        (temporary / "report.json").write_text(json.dumps(report_json(report), indent=2) + "\n")
        (temporary / "report.md").write_text(report_markdown(report))
        if out.exists():
            shutil.rmtree(out)
        os.replace(temporary, out)
    except BaseException:
        steps.close(finished=False)
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return report


@dataclass(frozen=True)
class _ReportImages:
    """The images a report compares, each relabelled to the model's label order."""

    real: LabelledSet  # the held-out real images (--real)
    synthetic: LabelledSet  # generated afresh from the checkpoint
    train: LabelledSet | None  # the real training images, when there are any
    real_fingerprint: str
    train_fingerprint: str | None


@dataclass(frozen=True)
class _DomainSide:
    """What the domain step measured that later steps (near copies, curated) use again."""

    classifier: domain.DomainClassifier
    standardiser: normalised.FeatureStandardiser  # fitted on the real training images' features
    features: tuple[np.ndarray, np.ndarray, np.ndarray]  # real training, real held-out, synthetic


@dataclass(frozen=True)
class _Measure:
    """The report's steps, in the order they run: each adds its figures, notes and plots to
    ``report`` and writes its plots into ``folder``."""

    report: Report
    folder: Path
    steps: _Steps
    images: _ReportImages
    settings: ReportSettings
    device: torch.device
    progress: bool

    def run(
        self,
        weights: Path | None,
        checkpoint: str | Path | dict,
        train_dir: str | Path | None,
        on_classifier: OnClassifier | None,
        utility_classifier: UtilityClassifier | None,
    ) -> None:
        report, images, settings = self.report, self.images, self.settings
        domain_side = None
        if images.train is None:
            report.notes.append(
                "no training folder: domain FID/KID/IS, the histogram floor and utility skipped."
            )
        else:
            self.steps.start("domain classifier and features")
            domain_side = self.domain_figures(images.train, on_classifier)
            self.steps.start("near copies")
            self.near_copy_figures(images.train, domain_side)

        # Could a small CNN tell synthetic images from real held-out ones of the same class?
        self.steps.start("two-sample test")
        two_sample.two_sample_figures(
            report, self.folder, images.real, images.synthetic, settings, self.device
        )
        if settings.curated_keep_best is not None and domain_side is not None:
            _curated_figures(
                report, checkpoint, train_dir, settings, domain_side, images.real, self.device, self.progress
            )

        # Inception FID: only with the published weights, never with stand-ins.
        if weights is None:
            report.notes.append(inception.missing_weights_message())
        else:
            self.steps.start("Inception FID")
            inception.inception_figures(
                report,
                weights,
                images.real[0],
                images.synthetic[0],
                images.real_fingerprint,
                self.device,
                self.progress,
            )

        # Colour histograms, 150 against 150 per class, beside the real-against-real floor.
        self.steps.start("colour histograms")
        histogram.histogram_figures(
            report, self.folder, images.real, images.synthetic, images.train, settings
        )

        # Classifier utility: does adding synthetic images help a classifier on real test images?
        utility_models: dict[str, torch.nn.Module] = {}
        if settings.utility:
            self.utility_figures(utility_classifier, utility_models)
        # Grad-CAM: does the classifier look at the same places in synthetic as in real images?
        if settings.gradcam:
            self.gradcam_figures(utility_models.get("real_only"))

    def domain_figures(self, train: LabelledSet, on_classifier: OnClassifier | None) -> _DomainSide:
        """Features and class probabilities from a CNN trained on the real classes: its accuracy,
        normalised domain FID and KID beside their floors, domain IS (gen.metrics.normalised)."""
        report = self.report
        (real_images, real_labels), (fake_images, fake_labels) = self.images.real, self.images.synthetic
        fingerprint = self.images.train_fingerprint
        classifier, path, cached = domain.domain_classifier(
            *train, len(report.class_names), fingerprint, self.settings, self.device, progress=self.progress
        )
        # Domain FID and KID are measured on features z-scored with these (training) statistics.
        standardiser, train_features = normalised.domain_reference(classifier, train[0], self.device)
        real_features, real_probabilities = domain.domain_features_and_probabilities(
            classifier, real_images, device=self.device
        )
        fake_features, fake_probabilities = domain.domain_features_and_probabilities(
            classifier, fake_images, device=self.device
        )
        accuracy = float((real_probabilities.argmax(1) == real_labels.numpy()).mean())
        report.add(
            "domain_classifier_accuracy", accuracy, None, classifier=str(path), fingerprint=fingerprint
        )
        if not cached and on_classifier is not None:
            on_classifier(path, file_sha256(path), classifier.config.to_dict(), accuracy, fingerprint)
        normalised.feature_figures(
            report,
            "domain_",
            standardiser,
            train_features,
            real_features,
            fake_features,
            (train[1].numpy(), real_labels.numpy(), fake_labels.numpy()),
            self.settings,
        )
        report.add("domain_is", inception_score.inception_score(fake_probabilities)[0])
        report.add("domain_is_real", inception_score.inception_score(real_probabilities)[0])
        synthetic_accuracy = float((fake_probabilities.argmax(1) == fake_labels.numpy()).mean())
        report.add("domain_classifier_accuracy_on_synthetic", synthetic_accuracy)
        return _DomainSide(classifier, standardiser, (train_features, real_features, fake_features))

    def near_copy_figures(self, train: LabelledSet, domain_side: _DomainSide) -> None:
        """Near copies in two spaces: standardised domain features and pixels."""
        pixels = (train[0], self.images.real[0], self.images.synthetic[0])
        near_copies.near_copy_figures(
            self.report,
            self.folder,
            {
                "features": tuple(domain_side.standardiser(features) for features in domain_side.features),
                "pixels": tuple(near_copies.pixels(x) for x in pixels),
            },
            (train[1].numpy(), self.images.real[1].numpy(), self.images.synthetic[1].numpy()),
            (train[0], self.images.synthetic[0]),
        )

    def utility_figures(
        self, utility_classifier: UtilityClassifier | None, models: dict[str, torch.nn.Module]
    ) -> None:
        if self.images.train is None:
            raise GenError("--utility needs the real training images: pass --train DIR.")
        self.steps.start("utility classifiers")
        build = None
        if utility_classifier is not None:
            build = _recorded_classifier_figures(
                self.report,
                utility_classifier,
                self.report.class_names,
                self.images.real,
                self.settings,
                self.device,
            )
        utility.utility_figures(
            self.report,
            self.folder,
            (self.images.train, self.images.synthetic, self.images.real),
            self.settings,
            self.device,
            self.progress,
            models=models,
            build=build,
        )

    def gradcam_figures(self, explained: torch.nn.Module | None) -> None:
        """Grad-CAM of ``explained``, the utility classifier trained on real images only; trained
        here as utility would train it when --utility did not run."""
        if self.images.train is None:
            raise GenError("--gradcam needs the real training images: pass --train DIR.")
        self.steps.start("Grad-CAM")
        if explained is None:
            explained = domain.train_domain_classifier(
                *self.images.train,
                len(self.report.class_names),
                epochs=self.settings.utility_epochs,
                seed=self.settings.seed,
                device=self.device,
                progress=self.progress,
            )
        gradcam.gradcam_figures(
            self.report, self.folder, explained, self.images.real, self.images.synthetic, self.device
        )


CURATED_METRICS = ("domain_classifier_accuracy_on_synthetic", "domain_fid", "two_sample_auc")


def _curated_figures(
    report: Report,
    checkpoint: str | Path | dict,
    train_dir: str | Path | None,
    settings: ReportSettings,
    domain_side: _DomainSide,
    real: LabelledSet,
    device: torch.device,
    progress: bool,
) -> None:
    """The ``curated_`` figures: n_per_class images per class kept of ceil(n / F) candidates by
    gen.curation's own classifier, scored by this report's (another seed and split)."""
    from gen.checkpoint import load_checkpoint
    from gen.curation import CurationSettings, Curator, curated_class

    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    curation = CurationSettings(
        keep_best=settings.curated_keep_best, classifier_epochs=settings.classifier_epochs
    )
    curator = Curator(state, curation, device, train_dir=train_dir, progress=progress)
    generator = load_generator(load_for_sampling(state), device)
    images, labels = [], []
    for label in range(len(report.class_names)):
        kept = curated_class(curator, generate, generator, label, settings.seed, settings.n_per_class, device)
        images.append(kept)
        labels.append(torch.full((len(kept),), label))
    curated_images, curated_labels = torch.cat(images), torch.cat(labels)
    counted = {
        "keep_best": settings.curated_keep_best,
        "curating_classifier": curator.record(0)["classifier"],
    }
    features, probabilities = domain.domain_features_and_probabilities(
        domain_side.classifier, curated_images, device=device
    )
    accuracy = float((probabilities.argmax(1) == curated_labels.numpy()).mean())
    report.add("curated_domain_classifier_accuracy_on_synthetic", accuracy, **counted)
    real_features = domain_side.features[1]
    normalised.fid_figure(
        report, "curated_domain_fid", None, real_features, features, domain_side.standardiser, **counted
    )
    results = two_sample.two_sample_test(
        real,
        (curated_images, curated_labels),
        list(report.class_names),
        folds=settings.two_sample_folds,
        epochs=settings.two_sample_epochs,
        seed=settings.seed,
        device=device,
    )
    for result in results:
        report.add("curated_two_sample_auc", result.auc, result.class_name, **counted)
    overall = two_sample.overall_auc(results)
    if overall is not None:
        report.add("curated_two_sample_auc", overall, None, **counted)


def side_by_side(report: Report) -> list[tuple[str, str, str, str]]:
    """(metric, class or "overall", uncurated, curated) for each curated figure."""
    values = {(f.metric, f.class_name): f.value for f in report.figures}
    rows = []
    for figure in report.figures:
        if figure.metric.startswith("curated_"):
            plain = values.get((figure.metric.removeprefix("curated_"), figure.class_name))
            shown = "-" if plain is None else f"{plain:.4f}"
            rows.append(
                (
                    figure.metric.removeprefix("curated_"),
                    figure.class_name or "overall",
                    shown,
                    f"{figure.value:.4f}",
                )
            )
    return rows


def _recorded_classifier_figures(
    report: Report,
    recorded: UtilityClassifier,
    class_names: tuple[str, ...],
    test_real: LabelledSet,
    settings: ReportSettings,
    device: torch.device,
) -> Callable[[], torch.nn.Module]:
    """Score the recorded classifier's weights on the held-out images (a figure) and return
    what builds its architecture afresh for the utility regimes (any kind gen.classifiers
    builds: a searched one, the simple CNN, a torchvision ResNet)."""
    from gen.classifiers import build_network, load_network

    classes = recorded.architecture.get("classes")
    if classes is not None and tuple(classes) != tuple(class_names):
        raise GenError(
            f"classifier {recorded.id} was trained on classes {', '.join(classes)}; "
            f"the model's are {', '.join(class_names)}."
        )
    model = load_network(recorded.path, recorded.architecture, device)
    if model.config.num_classes != len(class_names):
        raise GenError(
            f"classifier {recorded.id} tells {model.config.num_classes} classes apart; "
            f"the model has {len(class_names)}."
        )
    _, probabilities = domain.domain_features_and_probabilities(model, test_real[0], device=device)
    scored = utility.evaluate_predictions(probabilities, test_real[1].numpy(), list(class_names))
    report.add("accuracy_recorded_classifier", scored["accuracy"], classifier=recorded.id)
    return lambda: build_network(recorded.architecture, settings.seed)


def report_json(report: Report) -> dict[str, Any]:
    return {
        "model": report.model_id,
        "checkpoint": report.checkpoint,
        "iteration": report.iteration,
        "classes": list(report.class_names),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": report.settings,
        "figures": [asdict(figure) for figure in report.figures],
        "notes": report.notes,
        "plots": report.plots,
        "utility": report.utility,
    }


def table_rows(report: Report) -> list[tuple[str, str, str]]:
    """(metric, class or "overall", value) for printing, in report order."""
    return [(f.metric, f.class_name or "overall", f"{f.value:.4f}") for f in report.figures]


def report_markdown(report: Report) -> str:
    lines = [
        f"# Quality report: model {report.model_id if report.model_id is not None else '-'}",
        "",
        f"Checkpoint `{report.checkpoint}` (iteration {report.iteration}); "
        f"{report.settings['n_per_class']} synthetic images per class against `{report.settings['real']}`.",
        "",
        "| metric | class | value |",
        "|---|---|---|",
        *(f"| {metric} | {where} | {value} |" for metric, where, value in table_rows(report)),
        "",
    ]
    compared = side_by_side(report)
    if compared:
        lines += [
            f"## Curated against uncurated (keep the best {report.settings['curated_keep_best']:g})",
            "",
            "| metric | class | uncurated | curated |",
            "|---|---|---|---|",
            *(f"| {metric} | {where} | {plain} | {curated} |" for metric, where, plain, curated in compared),
            "",
        ]
    if report.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    if report.plots:
        lines += ["## Plots", "", *(f"![{plot}]({plot})" for plot in report.plots), ""]
    return "\n".join(lines)
