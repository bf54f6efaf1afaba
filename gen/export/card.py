"""The data set's card: README.md and index.html, with its licence and citation."""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gen.errors import GenError
from gen.export.layout import (
    CROISSANT_NAME,
    CSV_NAME,
    GRID_COLUMNS,
    GRID_ROWS,
    HF_METADATA_NAME,
    MANIFEST_NAME,
    MD5SUMS_NAME,
    METADATA_NAME,
    PLOT_PREFIX,
    REPORT_MARKDOWN_NAME,
    REPORT_NAME,
    SQL_DUMP_NAME,
)

if TYPE_CHECKING:
    from db.generators import ModelInfo


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _architecture_line(spec: dict[str, Any]) -> str:
    from gen.architecture import from_json

    try:
        parsed = from_json(spec)
    except (GenError, TypeError, ValueError):
        return "custom (see gan_architectures in database.sql)"
    if parsed.cell is None:  # the cpu, reference and baseline presets: no searched cell
        attention = f", self-attention at stages {list(parsed.attention)}" if parsed.attention else ""
        return f"plain convolution blocks{attention}, channels {list(parsed.channels)}"
    return f"cell {parsed.encoding()}, channels {list(parsed.channels)}"


# An SPDX licence identifier (https://spdx.org/licenses/), an SPDX expression of them, or a
# LicenseRef-; "none" says that no licence is granted.
_SPDX = re.compile(r"(LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.+-]*)( (AND|OR|WITH) \S+)*")


def check_license(value: str, option: str = "--license") -> str:
    """``value`` if it is an SPDX identifier or expression (or "none"), else GenError."""
    if value == "none" or _SPDX.fullmatch(value):
        return value
    raise GenError(
        f"{option} {value!r} is not an SPDX licence identifier (e.g. CC-BY-4.0, CC0-1.0, MIT; "
        "see https://spdx.org/licenses/), nor 'none'."
    )


@dataclass(frozen=True)
class Publication:
    """What the publisher says about the data set: licence, the training images' licence,
    citation, title and description. Licences are SPDX identifiers; None means not stated."""

    license: str | None = None  # "none": no licence is granted
    training_license: str | None = None
    citation: str | None = None
    title: str | None = None
    description: str | None = None


@dataclass
class Card:
    """What the README and index.html say, gathered once."""

    title: str
    model: ModelInfo
    manifest: dict[str, Any]
    figures: list[dict[str, Any]]
    report_copied: bool
    plots: list[str]
    grids: dict[str, str]  # class -> grid path
    checkpoints: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    publication: Publication = field(default_factory=lambda: Publication())
    report_note: str | None = None  # why no report describes these images


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _licence_section(publication: Publication) -> str:
    def link(identifier: str) -> str:
        if " " in identifier or identifier.startswith("LicenseRef-"):
            return f"`{identifier}`"
        return f"[{identifier}](https://spdx.org/licenses/{identifier}.html)"

    if publication.license in (None, "none"):
        this = "No licence is granted for this data set: ask its publisher before reusing the images."
    else:
        this = f"This data set is published under {link(publication.license)}."
    if publication.training_license is None:
        training = (
            "The licence of the real images the generator was trained on was not stated "
            "(`gen export --training-license`)."
        )
    elif publication.training_license == "none":
        training = "The real images the generator was trained on were not published under a licence."
    else:
        training = (
            f"The real images the generator was trained on are under {link(publication.training_license)}."
        )
    return f"{this} {training}"


def _citation_section(card: Card) -> str:
    citation = card.publication.citation
    if citation:
        text = citation.strip()
        return f"```bibtex\n{text}\n```" if text.startswith("@") else text
    created = card.manifest["created_at"]
    key = f"gen_model{card.model.id}_{created[:10].replace('-', '')}"
    return (
        "No citation was given; this entry describes the data set itself.\n\n"
        f"```bibtex\n@misc{{{key},\n  title  = {{{{{card.title}}}}},\n  year   = {{{created[:4]}}},\n"
        f"  note   = {{Synthetic images generated with gen {card.manifest['tool_version']}, model "
        f"{card.model.id}}}\n}}\n```"
    )


@dataclass(frozen=True)
class _Evidence:
    """One question a consumer asks of the images, answered by a report figure and its plots."""

    title: str
    metric: str
    meaning: str
    plot_prefix: str  # the report's plot names for it start so (before PLOT_PREFIX is added)


EVIDENCE = (
    _Evidence(
        "Near copies",
        "near_copy_share",
        "Are these new cells, or near copies of training images? The share of synthetic images "
        "closer to a training image (in domain features or pixels) than 99% of unseen real cells "
        "come; about 0.01 is what new cells show, far above it means memorised training images. "
        "Each grid: a class's closest synthetic images (top) above their nearest training images.",
        "near-copies-",
    ),
    _Evidence(
        "Realism: classifier two-sample test",
        "two_sample_auc",
        "Could a machine tell them from real images? The ROC AUC of a small CNN trained to tell "
        "real held-out images from synthetic ones of the same class (k-fold, balanced): 0.5 means "
        "it cannot tell them apart, 1.0 that it always can. Each grid: the synthetic images it "
        "found most synthetic (top) and least synthetic (bottom).",
        "two-sample-",
    ),
    _Evidence(
        "Grad-CAM: where a classifier looks",
        "gradcam_similarity",
        "Does a classifier trained on real images look at the cell in synthetic images as it does "
        "in real ones? Its class activation maps over real (top row) and synthetic images (bottom "
        "row) of each class; the figure is the Pearson correlation of the two mean maps (1: the same "
        "places on average).",
        "gradcam-",
    ),
)


def _evidence(card: Card) -> list[tuple[_Evidence, list[tuple[str, str]], list[str]]]:
    """(the question, its figures as (class, value), its plots) for each one the report answers."""
    found = []
    for evidence in EVIDENCE:
        rows = [
            (f["class_name"] or "all classes", _fmt(f["value"]))
            for f in card.figures
            if f["metric"] == evidence.metric
        ]
        plots = [plot for plot in card.plots if plot.startswith(PLOT_PREFIX + evidence.plot_prefix)]
        if rows or plots:
            found.append((evidence, rows, plots))
    return found


def _loading_snippets(class_name: str) -> str:
    """How to load the data set where people work: torchvision, Hugging Face, mlcroissant."""
    return (
        "From the data set's folder (`.`):\n\n"
        "```python\n"
        "# torchvision: the class folders are the classes\n"
        "from torchvision.datasets import ImageFolder\n"
        'images = ImageFolder(".")  # images.classes, images[0] == (PIL image, label)\n\n'
        f"# Hugging Face datasets: labels from {HF_METADATA_NAME}, a ClassLabel with the class names\n"
        "from datasets import load_dataset\n"
        'data = load_dataset("imagefolder", data_dir=".")["train"]  # data[0]["image"], data[0]["label"]\n'
        'names = data.features["label"].names  # names[data[0]["label"]]\n\n'
        f"# MLCommons Croissant: {CROISSANT_NAME}\n"
        "import mlcroissant as mlc\n"
        f'for record in mlc.Dataset(jsonld="{CROISSANT_NAME}").records("images"):\n'
        '    image, label = record["images/image"], record["images/label"].decode()\n'
        "```\n\n"
        f"Check the files without gen: `(cd {shlex.quote(class_name)} && md5sum -c {MD5SUMS_NAME})`."
    )


def render_readme(card: Card) -> str:
    manifest, model, training = card.manifest, card.model, card.model.training
    classes = manifest["classes"]
    total = manifest["images"]
    has_dump = SQL_DUMP_NAME in manifest["files"]
    has_csv = CSV_NAME in manifest["files"]
    contents = [("`<class>/*.png`", "the images, one folder per class"), ("`<class>/MD5SUMS`", "their MD5s")]
    if has_dump:
        contents.append(
            (
                f"`{SQL_DUMP_NAME}`",
                f"SQL dump ({manifest['dialect']}) of the rows recording how each image was made",
            )
        )
    if has_csv:
        contents.append((f"`{CSV_NAME}`", f"GAN settings behind the first {manifest['csv_rows']} images"))
    report_files = [
        REPORT_NAME,
        *([REPORT_MARKDOWN_NAME] if REPORT_MARKDOWN_NAME in manifest["files"] else []),
    ]
    contents.append(
        (
            ", ".join(f"`{name}`" for name in report_files),
            "the quality report" + (", plots in `plot-*.png`" if card.plots else ""),
        )
    )
    contents += [
        (f"`{METADATA_NAME}`", "each image's class, MD5, checkpoint, seed and sample index"),
        (
            f"`{HF_METADATA_NAME}`",
            "the same, the class a label for Hugging Face datasets' imagefolder loader",
        ),
        (f"`{CROISSANT_NAME}`", "MLCommons Croissant metadata: the files, their checksums and the records"),
        ("`grid-<class>.png`", "a sample grid per class"),
        ("`README.md`", "this card"),
        ("`index.html`", "a preview: a sample grid per class"),
        (f"`{MANIFEST_NAME}`", "counts, sizes and SHA-256 of the other files"),
    ]
    if card.figures:
        quality = _table(
            ("metric", "class", "value"),
            ((f["metric"], f["class_name"] or "all classes", _fmt(f["value"])) for f in card.figures),
        )
    elif card.report_copied:
        quality = f"See `{REPORT_NAME}`" + (" and the plots in `plot-*.png`." if card.plots else ".")
    elif card.report_note:
        quality = card.report_note
    else:
        quality = (
            "No quality report was recorded for this model, so this data set comes without quality "
            f"figures (`{REPORT_NAME}` lists none)."
        )
    training_rows = [
        ("generator", _architecture_line(model.generator)),
        ("discriminator", _architecture_line(model.discriminator)),
        *((key, _fmt(training.get(key))) for key in ("g_optimizer", "d_optimizer", "loss", "batch_size")),
        ("iterations trained", _fmt(training.get("iterations"))),
        ("epochs", _fmt(training.get("epochs"))),
        *((key, _fmt(training.get(key))) for key in ("g_lr", "d_lr", "ema_decay", "diffaugment", "seed")),
        ("images sampled at iterations", ", ".join(map(str, card.checkpoints))),
        ("sampling seeds", ", ".join(map(str, card.seeds))),
    ]
    commands = [
        (
            f"(cd {shlex.quote(next(iter(classes)))} && md5sum -c {MD5SUMS_NAME})",
            "each class folder, no gen needed",
        ),
        ("gen verify .", "every checksum, count and row"),
    ]
    if has_dump:
        load = (
            f"psql -v ON_ERROR_STOP=1 -d EMPTY_DATABASE -f {SQL_DUMP_NAME}"
            if manifest["dialect"] == "postgresql"
            else f"sqlite3 provenance.db < {SQL_DUMP_NAME}"
        )
        commands.append((load, "the provenance rows, into an empty database"))
    width = max(len(command) for command, _ in commands)
    verify = [f"{command.ljust(width)}   # {why}" for command, why in commands]
    sections = [
        f"# {card.title}",
        f"A synthetic, labelled image data set: {total} images in {len(classes)} classes, generated by a "
        f"class-conditional GAN (gen model {model.id}, {model.preset or 'custom'} architecture) with gen "
        f"{manifest['tool_version']} on {manifest['created_at'][:10]}. Every image is recorded with the "
        "model, checkpoint, class, seed and sample index that made it, so each one can be made again.",
        *([card.publication.description.strip()] if card.publication.description else []),
        "## Contents",
        _table(("path", "what"), contents),
        "## Classes",
        _table(("class", "images"), [*classes.items(), ("**total**", f"**{total}**")]),
        "## How it was made",
        _table(("setting", "value"), training_rows),
        "## Quality",
        quality,
        *(
            part
            for evidence, rows, plots in _evidence(card)
            for part in (
                f"### {evidence.title}",
                evidence.meaning,
                *([_table(("class", evidence.metric), rows)] if rows else []),
                *([" ".join(f"![{Path(p).stem}]({quote(p)})" for p in plots)] if plots else []),
            )
        ),
        "## How to load",
        _loading_snippets(next(iter(classes))),
        "## Licence",
        _licence_section(card.publication),
        "## Citation",
        _citation_section(card),
        "## How to verify",
        "```sh\n" + "\n".join(verify) + "\n```\n"
        "`README.md` and `index.html` are meant to be edited and are not checksummed; `gen verify` checks "
        "everything else.",
    ]
    return "\n\n".join(sections) + "\n"


def render_index(card: Card) -> str:
    """A static page with no external assets: the images it shows are files of the data set."""
    manifest = card.manifest
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(card.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "figure{margin:1em 0}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(card.title)}</h1>",
        f"<p>{manifest['images']} synthetic images in {len(manifest['classes'])} classes from gen model "
        f"{card.model.id}, made with gen {esc(manifest['tool_version'])} "
        f"on {esc(manifest['created_at'][:10])}. "
        'See <a href="README.md">README.md</a> for how they were made and how to verify them.</p>',
        *([f"<p>{esc(card.publication.description.strip())}</p>"] if card.publication.description else []),
        f"<p>Licence: {esc(card.publication.license or 'not stated')}; training images: "
        f"{esc(card.publication.training_license or 'not stated')}.</p>",
        "<table><tr><th>class</th><th>images</th></tr>",
        *(f"<tr><td>{esc(name)}</td><td>{count}</td></tr>" for name, count in manifest["classes"].items()),
        "</table>",
    ]
    for name, grid in card.grids.items():
        shown = min(manifest["classes"][name], GRID_COLUMNS * GRID_ROWS)
        parts += [
            f'<h2 id="class-{esc(quote(name))}">{esc(name)}</h2>',
            f'<figure><img src="{esc(quote(grid))}" alt="{shown} sample images of class {esc(name)}">'
            f"<figcaption>{shown} of {manifest['classes'][name]} images</figcaption></figure>",
        ]
    if card.figures:
        parts += ["<h2>Quality</h2>", "<table><tr><th>metric</th><th>class</th><th>value</th></tr>"]
        parts += [
            f"<tr><td>{esc(f['metric'])}</td><td>{esc(f['class_name'] or 'all classes')}</td>"
            f"<td>{esc(_fmt(f['value']))}</td></tr>"
            for f in card.figures
        ]
        parts.append("</table>")
    if card.figures or card.report_copied:
        reports = [
            REPORT_NAME,
            *([REPORT_MARKDOWN_NAME] if REPORT_MARKDOWN_NAME in manifest["files"] else []),
        ]
        links = ", ".join(f'<a href="{name}">{name}</a>' for name in reports)
        parts.append(f"<p>The full quality report: {links}.</p>")
    shown_plots: set[str] = set()
    for evidence, rows, plots in _evidence(card):
        parts += [f"<h2>{esc(evidence.title)}</h2>", f"<p>{esc(evidence.meaning)}</p>"]
        if rows:
            parts.append(f"<table><tr><th>class</th><th>{esc(evidence.metric)}</th></tr>")
            parts += [f"<tr><td>{esc(where)}</td><td>{esc(value)}</td></tr>" for where, value in rows]
            parts.append("</table>")
        parts += [
            f'<figure><img src="{esc(quote(plot))}" alt="{esc(Path(plot).stem)}">'
            f"<figcaption>{esc(Path(plot).name)}</figcaption></figure>"
            for plot in plots
        ]
        shown_plots.update(plots)
    other_plots = [plot for plot in card.plots if plot not in shown_plots]
    if other_plots:
        parts.append("<h2>Plots</h2>")
        parts += [
            f'<figure><img src="{esc(quote(plot))}" alt="{esc(Path(plot).stem)}">'
            f"<figcaption>{esc(Path(plot).name)}</figcaption></figure>"
            for plot in other_plots
        ]
    first_class = next(iter(manifest["classes"]))
    parts += ["<h2>How to load</h2>", f"<pre>{esc(_loading_snippets(first_class))}</pre>"]
    if not card.figures and not card.report_copied:
        note = card.report_note or "No quality report was recorded for this model."
        parts.append(f"<p>{esc(note)}</p>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
