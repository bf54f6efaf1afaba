"""croissant.json: the data set described in MLCommons Croissant (1.1), written with mlcroissant.

    import mlcroissant as mlc
    records = mlc.Dataset(jsonld="EXPORT/croissant.json").records("images")

What it holds:
- distribution: every PNG as a FileObject with its MD5 and SHA-256 (mlcroissant checks one of
  them when it reads the file), images.csv as a FileObject, and the FileSet of the PNGs
  ("*/*.png", relative to croissant.json) that the records read their pixels from;
- the record set "images": file_name, image, label (the class name), model_id, iteration,
  seed, sample_index and md5, one record per image file, read from images.csv and joined
  to the file set by path;
- the data set's name, description, licence, citation, creator, version and date, and the
  Responsible-AI fields the database can answer (how the images were made, what they cannot
  stand for, and that no patient's image is in it).

Why a FileObject per PNG: the FileSet alone carries no checksums, and every file should have
one. mlcroissant builds the document with the first image's FileObject; the others are copies
of its JSON-LD with their own values, as building a node costs mlcroissant about 4 ms
(40 s for 10,000 images). `mlcroissant validate` and loading check the whole document.

Only paths relative to the data set appear (gen.redact's rule for published files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gen.checkpoint import file_sha256
from gen.export.layout import COPY_THREADS, METADATA_NAME, ExportedImage

if TYPE_CHECKING:
    from db.generators import ModelInfo

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
# The JSON-LD @context gen writes (mlcroissant's for this version). Verify requires exactly this
# one: a context decides what every key means, so an edited one could make "name" a contentUrl.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "dct": "http://purl.org/dc/terms/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "sc": "https://schema.org/",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    **{
        term: f"cr:{term}"
        for term in (
            "citeAs", "column", "equivalentProperty", "extract", "field", "fileProperty", "fileObject",
            "fileSet", "format", "includes", "isLiveDataset", "jsonPath", "key", "md5", "parentField",
            "path", "recordSet", "references", "regex", "repeated", "replace", "samplingRate",
            "separator", "source", "subField", "transform",
        )
    },
}  # fmt: skip
RECORD_SET = "images"
FILE_SET = "png-files"
DATASET_VERSION = "1.0.0"


def _md5(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "md5").hexdigest()


def _image_files(root: Path, images: Sequence[ExportedImage]) -> list[dict[str, Any]]:
    """Each distinct PNG's path, size, MD5 (from its row, checked when it was copied) and SHA-256."""
    distinct = list({image.relative_path: image for image in images}.values())
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        sha256s = list(pool.map(lambda image: file_sha256(root / image.relative_path), distinct))
    return [
        {
            "path": image.relative_path,
            "size": (root / image.relative_path).stat().st_size,
            "md5": image.md5,
            "sha256": sha256,
        }
        for image, sha256 in zip(distinct, sha256s, strict=True)
    ]


def _file_object(mlc: Any, file: dict[str, Any]) -> Any:
    return mlc.FileObject(
        id=f"file/{file['path']}",
        name=file["path"],
        content_url=file["path"],
        content_size=f"{file['size']} B",
        encoding_formats=["image/png"],
        md5=file["md5"],
        sha256=file["sha256"],
    )


def _like(template: dict[str, Any], first: dict[str, Any], file: dict[str, Any]) -> dict[str, Any]:
    """The JSON-LD mlcroissant wrote for ``first``'s FileObject, with ``file``'s values instead."""
    swapped = {str(first[key]): str(file[key]) for key in ("path", "md5", "sha256")}
    swapped[f"{first['size']} B"] = f"{file['size']} B"
    swapped[f"file/{first['path']}"] = f"file/{file['path']}"
    return {
        key: swapped.get(value, value) if isinstance(value, str) else value for key, value in template.items()
    }


def _fields(mlc: Any) -> list[Any]:
    from mlcroissant._src.structure_graph.nodes.source import FileProperty

    def column(name: str) -> Any:
        return mlc.Source(file_object=METADATA_NAME, extract=mlc.Extract(column=name))

    def described(name: str, data_type: Any, description: str, source: Any, **more: Any) -> Any:
        return mlc.Field(
            id=f"{RECORD_SET}/{name}",
            name=name,
            description=description,
            data_types=[data_type],
            source=source,
            **more,
        )

    # The join key: the PNG's path inside the data set. The regex turns mlcroissant's path
    # object into text, which the join needs to match images.csv's file_name.
    path = mlc.Source(
        file_set=FILE_SET,
        extract=mlc.Extract(file_property=FileProperty.fullpath),
        transforms=[mlc.Transform(regex="^(.*)$")],
    )
    text, integer = mlc.DataType.TEXT, mlc.DataType.INTEGER
    return [
        described(
            "file_name", text, "The image's path, <class>/<file>.png", path, references=column("file_name")
        ),
        described(
            "image",
            mlc.DataType.IMAGE_OBJECT,
            "The synthetic image (PNG, RGB)",
            mlc.Source(file_set=FILE_SET, extract=mlc.Extract(file_property=FileProperty.content)),
        ),
        described("label", text, "The class the generator was asked for: the class folder", column("label")),
        described("model_id", integer, "The gen model (database id) that made the image", column("model_id")),
        described("iteration", integer, "The checkpoint's training iteration", column("iteration")),
        described("seed", integer, "The sampling seed", column("seed")),
        described(
            "sample_index", integer, "The image's index within its seed and class", column("sample_index")
        ),
        described("md5", text, "MD5 of the PNG file", column("md5")),
    ]


def croissant_json(
    root: Path,
    images: Sequence[ExportedImage],
    *,
    title: str,
    description: str,
    license: str | None,
    citation: str,
    created_at: datetime,
    tool_version: str,
    model: ModelInfo,
    near_copy_share: float | None,
) -> dict[str, Any]:
    """The Croissant JSON-LD of the data set at root (its images and images.csv written)."""
    import mlcroissant as mlc

    files = _image_files(root, images)
    training = model.training
    trained_on = training.get("dataset_fingerprint")
    collection = (
        f"Generated, not collected: each image was sampled from a class-conditional GAN (gen "
        f"{tool_version}, model {model.id}, {model.preset or 'custom'} architecture) with a recorded "
        "seed, sample index and checkpoint, so it can be made again. The GAN was trained on real "
        "labelled microscopy images of the same classes"
        + (f" (data set fingerprint {trained_on[:16]})" if trained_on else "")
        + "; those images are not part of this data set."
    )
    memorised = (
        f"In the quality report that measured these images, {near_copy_share:.1%} of the synthetic "
        "images were closer to a training image than 99% of unseen real images are (near copies)."
        if near_copy_share is not None
        else "No near-copy (memorisation) check describes these images."
    )
    metadata = mlc.Metadata(
        name=title,
        description=description,
        conforms_to=CONFORMS_TO,
        license=[license] if license and license != "none" else ["none: no licence is granted"],
        cite_as=citation,
        creators=[mlc.Organization(name="gen", description=f"generated with gen {tool_version}")],
        version=DATASET_VERSION,
        date_created=created_at,
        date_published=created_at,
        keywords=["synthetic data", "cytology", "generative adversarial network", "image classification"],
        data_collection=collection,
        data_collection_type=["Synthetic data"],
        data_use_cases=[
            "Augmenting or pre-training image classifiers of these classes; studying generative models."
        ],
        data_limitations=[
            "The images follow the GAN's learned distribution, not nature's: they may miss rare "
            "morphologies and carry the generator's artefacts. They are not a substitute for real "
            "images in diagnosis or in evaluating a clinical model."
        ],
        data_biases=[
            "Whatever biases the real training images had (staining, scanner, patients, class "
            "balance) the generator learned; each class has as many images as were sampled, not as "
            "many as occur in practice."
        ],
        personal_sensitive_information=[
            "No patient's image is included, and no patient data is stored. A GAN can memorise "
            f"training images, though. {memorised}"
        ],
        distribution=[
            mlc.FileObject(
                id=METADATA_NAME,
                name=METADATA_NAME,
                content_url=METADATA_NAME,
                encoding_formats=["text/csv"],
                md5=_md5(root / METADATA_NAME),
                sha256=file_sha256(root / METADATA_NAME),
            ),
            mlc.FileSet(id=FILE_SET, name=FILE_SET, includes=["*/*.png"], encoding_formats=["image/png"]),
            # One FileObject goes through mlcroissant; the others are written in its exact shape
            # (building thousands of nodes costs mlcroissant about 4 ms each).
            _file_object(mlc, files[0]),
        ],
        record_sets=[
            mlc.RecordSet(
                id=RECORD_SET,
                name=RECORD_SET,
                description="One record per image file, with its class label and how it was made.",
                key=[f"{RECORD_SET}/file_name"],
                fields=_fields(mlc),
            )
        ],
    )
    errors = metadata.issues.errors
    if errors:  # a bug in what is written here, not the user's doing
        raise ValueError(f"croissant.json would not validate: {sorted(errors)}")
    document = metadata.to_json()
    if document.get("@context") != CONTEXT:  # mlcroissant changed: gen verify must learn its context
        raise ValueError("mlcroissant wrote another JSON-LD @context than gen.export.croissant.CONTEXT")
    template = document["distribution"][-1]
    document["distribution"] += [_like(template, files[0], file) for file in files[1:]]
    return document


def write_croissant(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, default=_iso) + "\n", encoding="utf-8")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
