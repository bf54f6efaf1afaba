"""Sampling labelled PNGs from a checkpoint's EMA generator.

Determinism: image ``i`` of class ``c`` under seed ``s`` is drawn from noise seeded by
``(s, c, i)`` alone, and the generator runs in eval mode (batch norm uses its running
statistics), so each image is independent of the batch it was computed in. What that buys:

- exact (byte-identical files): the same checkpoint, class, index and seed on the same
  machine, torch version, device, batch size and thread count;
- on any machine: every pixel within one intensity level. Convolution kernels are chosen by
  batch size, thread count and instruction set (oneDNN on x86, e.g. AVX2 against AVX-512),
  and their sums round differently in the last bit, which now and then moves a pixel by one.

Files are never overwritten: names continue the numbering already in ``OUT/<class>/``.
A ``Recorder`` (the database, in the CLI) may say which images of the request exist already,
so that a rerun after a crash completes the request instead of repeating it.

Curation (``curation=``, gen.curation): more candidates are drawn and scored, and only the
kept ones are written, each with its scores; a candidate's index is its place in the same
(seed, class) stream, so a kept image is made again like any other.

With a database, rows are written through gen.provenance, which gets the sampling settings
from here (``sampling_settings``) and imports nothing of this module.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from tqdm import tqdm

from gen.checkpoint import SamplingState, load_checkpoint, load_for_sampling, load_weights
from gen.errors import GenError
from gen.images import png_bytes, to_uint8
from gen.networks import Generator
from gen.runtime import left_by_a_dead_process, resolve_device
from gen.seeds import check_seed

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from gen.curation import ClassCuration, ClassPlan, CurationSettings, Curator, ImageScores


@dataclass(frozen=True)
class SampledImage:
    path: Path
    class_name: str
    label: int
    seed: int
    index: int  # position in the (seed, class) stream
    md5: str
    width: int
    height: int
    scores: ImageScores | None = None  # with curation


class Recorder(Protocol):
    """Where sampled images are recorded (see db.images.ImageRecorder); every method is per class."""

    def recorded(self, class_name: str, directory: Path) -> dict[int, Path]:
        """Indices of this request already recorded with files in ``directory``."""
        ...

    def known_paths(self, directory: Path) -> set[Path]:
        """Every file in ``directory`` that has a row, whatever request made it."""
        ...

    def record(self, images: Sequence[SampledImage]) -> None:
        """Record one batch, all or nothing."""
        ...

    # Only with curation:
    def begin_curation(self, settings: dict[str, Any]) -> None:
        """Start a curating run: later records belong to it."""
        ...

    def recorded_in_curation(self, class_name: str, directory: Path) -> dict[int, Path]:
        """Indices recorded in ``directory`` by curating runs with the same settings."""
        ...

    def finish_class(self, curation: ClassCuration, seconds: float) -> None:
        """Record a class's candidates, kept and rejected counts on the run."""
        ...


@dataclass(frozen=True)
class SampleResult:
    images: list[SampledImage]  # made or completed by this call, in request order
    skipped: int  # already recorded before this call
    out: Path
    checkpoint: Path
    iteration: int
    seconds: float
    curation: dict[str, ClassCuration] | None = None  # per class, with curation

    @property
    def images_per_second(self) -> float:
        return len(self.images) / max(self.seconds, 1e-9)


def image_noise(seed: int, label: int, indices: Sequence[int], noise_dim: int) -> torch.Tensor:
    """The noise vector of each image, a pure function of (seed, label, index)."""
    rows = []
    for index in indices:
        stream = torch.Generator().manual_seed(hash_seed(seed, label, index))
        rows.append(torch.randn(noise_dim, generator=stream))
    return torch.stack(rows)


def hash_seed(seed: int, label: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{label}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def load_generator(state: SamplingState, device: torch.device) -> Generator:
    generator = Generator(state.generator_spec)
    load_weights(generator, state.generator_ema, state.path, "generator_ema")  # a misfit: one sentence
    return generator.to(device).eval().requires_grad_(False)


@torch.no_grad()
def generate(
    generator: Generator, seed: int, label: int, indices: Sequence[int], device: torch.device
) -> torch.Tensor:
    """uint8 images for the stream positions ``indices`` of one class, in that order."""
    noise = image_noise(seed, label, indices, generator.spec.noise_dim)
    # PyTorch's CPU convolution takes another kernel for a batch of one, whose rounding
    # differs in the last bit (enough to flip a pixel now and then): a lone image is
    # computed beside a dummy one so that every image comes out of the same kernels.
    padded = torch.cat([noise, noise[:1]]) if len(indices) == 1 else noise
    labels = torch.full((len(padded),), label, device=device)
    return to_uint8(generator(padded.to(device), labels))[: len(indices)]


_NUMBERED = re.compile(r"_(\d+)\.png$")


def next_number(directory: Path) -> int:
    numbers = [int(m.group(1)) for p in directory.glob("*.png") if (m := _NUMBERED.search(p.name))]
    return max(numbers, default=0) + 1


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, refusing to replace an existing file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    try:
        os.link(temporary, path)  # fails if ``path`` exists, unlike a rename
    finally:
        temporary.unlink()


_SPECIAL_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device file",
    stat.S_IFBLK: "a device file",
}


def check_output_folder(out: Path, class_names: Sequence[str]) -> None:
    """GenError naming the first entry of ``out``, or of a class folder about to be written, that
    is not a regular file or a folder. Sampling reads a class folder's PNGs (to adopt a killed
    run's files), and a named pipe would hang it, a link to a device never end; a link could send
    new files anywhere. ``out`` itself may be a link: the user chose it."""
    for folder in (out, *(out / name for name in class_names)):
        try:
            with os.scandir(folder) as scanned:
                entries = sorted(scanned, key=lambda entry: entry.name)
            for entry in entries:
                mode = entry.stat(follow_symlinks=False).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    kind = _SPECIAL_KINDS.get(stat.S_IFMT(mode), "a special file")
                    raise GenError(
                        f"{entry.path} is {kind}; gen sample writes only where there are regular files "
                        f"and folders, so move it out of {out}."
                    )
        except FileNotFoundError:
            continue  # made when sampling starts
        except NotADirectoryError:
            raise GenError(f"{folder} is a file; gen sample writes its images into a folder there.") from None
        except OSError as error:
            raise GenError(f"cannot read the output folder {folder}: {error.strerror or error}.") from None


def sampling_settings(batch_size: int, device: str | torch.device) -> dict[str, object]:
    """What, besides the checkpoint, seed, class and index, decides an image's exact bytes."""
    return {
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "device": str(resolve_device(str(device))),
        "torch_version": torch.__version__,
    }


def requested_classes(class_names: Sequence[str], classes: Sequence[str] | None) -> list[str]:
    """The classes to sample (all when ``classes`` is None), or GenError naming the model's classes."""
    wanted = list(class_names) if classes is None else list(dict.fromkeys(classes))
    unknown = [name for name in wanted if name not in class_names]
    if unknown:
        raise GenError(f"unknown class {unknown[0]!r}; this model has: {', '.join(class_names)}.")
    return wanted


class _ClassWriter:
    """Names and writes one class's files in stream order, adopting matching orphans.

    A file number is claimed by creating the file (a hard link, which fails if the name is
    taken): two samplers writing into one class folder at once skip each other's numbers
    instead of colliding.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        label: int,
        seed: int,
        orphans: dict[str, Path],
        scores: dict[int, ImageScores] | None = None,
    ):
        self.directory, self.name, self.label, self.seed, self.orphans = directory, name, label, seed, orphans
        self.scores = scores or {}
        self.number = next_number(directory)

    def _write_numbered(self, data: bytes) -> Path:
        while True:
            path = self.directory / f"{self.name}_{self.number:06d}.png"
            self.number += 1
            try:
                _write_new(path, data)
                return path
            except FileExistsError:
                continue  # another sampler took this number first

    def write(self, indices: list[int], pixels: torch.Tensor, encoded: list[bytes]) -> list[SampledImage]:
        batch = []
        for index, image, data in zip(indices, pixels, encoded, strict=True):
            md5 = hashlib.md5(data).hexdigest()
            path = self.orphans.pop(md5, None)
            if path is None:
                path = self._write_numbered(data)
            height, width = image.shape[1:]
            batch.append(
                SampledImage(
                    path, self.name, self.label, self.seed, index, md5, width, height, self.scores.get(index)
                )
            )
        return batch


def _batches(indices: Iterable[int], size: int) -> Iterator[list[int]]:
    """``indices`` in lists of ``size``, drawn lazily (a request may name a billion images)."""
    batch: list[int] = []
    for index in indices:
        batch.append(index)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _without(
    batches: Iterable[tuple[list[int], torch.Tensor]], done: dict[int, Path]
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The batches less the indices in ``done``; batches left empty are dropped."""
    for indices, pixels in batches:
        keep = [position for position, index in enumerate(indices) if index not in done]
        if keep:
            yield [indices[position] for position in keep], pixels[keep]


def _remove_stale_temporaries(directory: Path) -> None:
    """Remove what a killed sampler left inside _write_new (``.NAME.PID.tmp``); the image is
    made again. A temporary of a sampler still running is its own business."""
    # ".NAME.png.tmp" (no pid) is what gen wrote before temporaries were named by process.
    for stale in [*directory.glob(".*.png.tmp"), *directory.glob(".*.png.*.tmp")]:
        if left_by_a_dead_process(stale.name.rsplit(".", 2)[1]):
            stale.unlink(missing_ok=True)


# A 64x64 PNG of a cell is 8-12 KB; the check before sampling assumes this much per image.
BYTES_PER_IMAGE = 16 * 1024


def _check_free_space(out: Path, images: int) -> None:
    needed = images * BYTES_PER_IMAGE
    free = shutil.disk_usage(out).free
    if needed > free:
        raise GenError(
            f"{images} images need about {needed / 2**30:.1f} GiB but {out} has {free / 2**30:.1f} GiB free; "
            "free some space or ask for fewer with --n."
        )


def sample(
    checkpoint: str | Path | dict,
    out: str | Path,
    n: int,
    classes: Sequence[str] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    database: Engine | str | None = None,
    recorder: Recorder | None = None,
    progress: bool = True,
    curation: CurationSettings | None = None,
    train_dir: str | Path | None = None,
) -> SampleResult:
    """Make ``n`` images of each class in ``classes`` (all classes when None) under ``out``.

    ``checkpoint`` is a checkpoint file, a run folder (its latest checkpoint) or a state that
    ``gen.checkpoint.load_checkpoint`` returned. ``database`` (a URL or a SQLAlchemy Engine)
    records one row per image as ``gen sample`` does (the checkpoint's model too, if the
    database has never seen it); ``recorder`` is the lower-level hook it fills.

    ``curation`` keeps the ``n`` best of more candidates per class (gen.curation); its
    classifier trains on ``train_dir``, by default the folder the checkpoint was trained on.
    The result's ``curation`` holds each class's counts; with a database they are recorded in
    a ``curations`` row and every kept image's row holds its scores. A rerun of the same
    curated request completes it.
    """
    if database is not None and recorder is not None:
        raise ValueError("give a database or a recorder, not both")
    if n < 1 or batch_size < 1:
        raise GenError("--n and --batch-size must be at least 1.")
    check_seed(seed)
    torch_device = resolve_device(device)
    if (database is not None or curation is not None) and not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, torch_device)  # recording and curation need all of it
    state = load_for_sampling(checkpoint, torch_device)
    wanted = requested_classes(state.class_names, classes)
    out = Path(out)
    check_output_folder(out, wanted)  # before a row or a folder is made
    if database is not None:
        from gen.provenance import engine_for, image_recorder

        recorder = image_recorder(
            engine_for(database), checkpoint, seed=seed, settings=sampling_settings(batch_size, device)
        )
    curator = None
    if curation is not None:
        from gen.curation import Curator

        curator = Curator(checkpoint, curation, torch_device, train_dir=train_dir, progress=progress)
        if recorder is not None:
            recorder.begin_curation(curator.record(n))
    generator = load_generator(state, torch_device)
    try:
        for name in wanted:
            (out / name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenError(f"cannot create output folder under {out}: {error.strerror}.") from None
    try:
        return _sample(
            state, generator, out, n, wanted, seed, batch_size, torch_device, recorder, progress, curator
        )
    except OSError as error:
        # A full disk or an unwritable class folder: the images written so far are whole and
        # recorded (or adopted by the rerun); say what happened in one sentence.
        where = error.filename or out
        raise GenError(f"cannot write images to {where}: {error.strerror or error}.") from None


def _sample(
    state: SamplingState,
    generator: Generator,
    out: Path,
    n: int,
    wanted: list[str],
    seed: int,
    batch_size: int,
    torch_device: torch.device,
    recorder: Recorder | None,
    progress: bool,
    curator: Curator | None = None,
) -> SampleResult:
    """Each class in turn: what is left of the request (less what is recorded already), drawn
    in batches, written and recorded; with curation, the kept candidates of the class's plan."""
    started = time.perf_counter()
    bar = tqdm(total=n * len(wanted), disable=not progress, unit="img", dynamic_ncols=True)
    pipeline = _EncodingPipeline(recorder, bar, started)
    done_by_class = {name: recorder.recorded(name, out / name) if recorder else {} for name in wanted}
    resumed_by_class: dict[str, set[int]] = {}
    if curator is not None:
        for name in wanted:
            found = recorder.recorded_in_curation(name, out / name) if recorder else {}
            resumed_by_class[name] = set(sorted(found)[:n])
    if curator is None:
        _check_free_space(out, sum(n - sum(1 for i in done if i < n) for done in done_by_class.values()))
    else:
        _check_free_space(out, sum(n - len(resumed) for resumed in resumed_by_class.values()))
    skipped = 0
    curated: dict[str, ClassCuration] = {}
    for name in wanted:
        label = state.class_names.index(name)
        directory = out / name
        _remove_stale_temporaries(directory)
        done = done_by_class[name]
        class_started = time.perf_counter()
        scores: dict[int, ImageScores] = {}
        if curator is None:
            missing = n - sum(1 for index in done if index < n)
            already = n - missing
            todo: Iterable[int] = (index for index in range(n) if index not in done)
            batches = (
                (i, generate(generator, seed, label, i, torch_device)) for i in _batches(todo, batch_size)
            )
        else:
            plan = _plan_class(
                curator,
                generator,
                bar,
                name,
                label,
                seed,
                n,
                resumed_by_class[name],
                batch_size,
                torch_device,
            )
            curated[name] = plan.record
            scores = plan.scores
            # A kept image already in the folder (recorded by another request) is not written twice.
            missing = len([index for index in plan.kept if index not in done])
            already = len(resumed_by_class[name]) + len(plan.kept) - missing
            batches = _without(plan.kept_batches(generate, generator, seed, label, torch_device), done)
        skipped += already
        bar.update(already)
        orphans = _orphans(recorder, directory) if recorder and missing else {}
        pipeline.write(_ClassWriter(directory, name, label, seed, orphans, scores), batches)
        if curator is not None and recorder is not None:
            recorder.finish_class(curated[name], time.perf_counter() - class_started)
    pipeline.close()
    bar.close()
    return SampleResult(
        pipeline.made,
        skipped,
        out,
        state.path,
        state.iteration,
        time.perf_counter() - started,
        curated if curator is not None else None,
    )


def _plan_class(
    curator: Curator,
    generator: Generator,
    bar: tqdm,
    name: str,
    label: int,
    seed: int,
    n: int,
    resumed: set[int],
    batch_size: int,
    device: torch.device,
) -> ClassPlan:
    """gen.curation's plan for one class, the bar counting the candidates it scores."""
    from gen.curation import plan_class

    bar.set_description(f"scoring {name}")
    scored = [0]

    def on_scored(count: int, scored: list[int] = scored) -> None:
        scored[0] += count
        bar.set_postfix(candidates=scored[0])

    plan = plan_class(
        curator,
        generate,
        generator,
        class_name=name,
        label=label,
        seed=seed,
        n=n,
        resumed=resumed,
        batch_size=batch_size,
        device=device,
        on_scored=on_scored,
    )
    bar.set_description(None)
    return plan


def _orphans(recorder: Recorder, directory: Path) -> dict[str, Path]:
    """Files written by a run that died before recording them, by MD5: the request adopts those
    it would make again (same bytes) rather than write duplicates beside them."""
    orphans: dict[str, Path] = {}
    known = recorder.known_paths(directory)
    for path in directory.glob("*.png"):
        if path.resolve() not in known:
            orphans[hashlib.md5(path.read_bytes()).hexdigest()] = path
    return orphans


class _EncodingPipeline:
    """Writes and records one class's batches. PNG encoding (which releases the GIL) of one batch
    overlaps the next forward pass; files are still named and written in index order, so the
    result is the same."""

    def __init__(self, recorder: Recorder | None, bar: tqdm, started: float):
        self.recorder, self.bar, self.started = recorder, bar, started
        self.made: list[SampledImage] = []
        self.encoders = ThreadPoolExecutor(max_workers=2)

    def write(self, writer: _ClassWriter, batches: Iterable[tuple[list[int], torch.Tensor]]) -> None:
        pending = None
        for indices, pixels in batches:
            encoded = [self.encoders.submit(png_bytes, image) for image in pixels]
            if pending is not None:
                self._finish(writer, *pending)
            pending = (indices, pixels, encoded)
        if pending is not None:
            self._finish(writer, *pending)

    def _finish(
        self, writer: _ClassWriter, indices: list[int], pixels: torch.Tensor, encoded: list[Future[bytes]]
    ) -> None:
        batch = writer.write(indices, pixels, [png.result() for png in encoded])
        if self.recorder:
            self.recorder.record(batch)  # after the files exist: a row never lacks its file
        self.made.extend(batch)
        self.bar.update(len(batch))
        images_per_second = len(self.made) / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(img_s=f"{images_per_second:.0f}", refresh=False)

    def close(self) -> None:
        self.encoders.shutdown()
