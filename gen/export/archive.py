"""A deterministic .tar.gz of a finished data set."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

from gen.export.layout import MANIFEST_NAME


def _walk_sorted(root: Path) -> list[Path]:
    found = []
    for folder, directories, files in os.walk(root):
        directories.sort()
        base = Path(folder)
        found += [base / name for name in directories]
        found += [base / name for name in sorted(files)]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def write_archive(folder: Path, target: Path, *, arcname: str | None = None, mtime: int | None = None) -> str:
    """A deterministic .tar.gz of folder (entries under arcname, default the folder's name);
    mtime defaults to the manifest's creation time. Returns the archive's SHA-256."""
    arcname = arcname or folder.name
    if mtime is None:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        mtime = int(datetime.fromisoformat(manifest["created_at"]).timestamp())
    digest = hashlib.sha256()

    class _Hashing(io.RawIOBase):
        def __init__(self, file: Any) -> None:
            self.file = file

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            digest.update(data)
            return self.file.write(data)

    def info(name: str, *, directory: bool, size: int = 0) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        entry.mode = 0o755 if directory else 0o644
        entry.size = size
        entry.mtime = mtime
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        return entry

    with open(target, "wb") as raw:
        hashing = _Hashing(raw)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=mtime, compresslevel=6) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(info(arcname, directory=True))
            for path in _walk_sorted(folder):
                name = f"{arcname}/{path.relative_to(folder).as_posix()}"
                if path.is_dir():
                    tar.addfile(info(name, directory=True))
                else:
                    with open(path, "rb") as file:
                        tar.addfile(info(name, directory=False, size=os.fstat(file.fileno()).st_size), file)
    return digest.hexdigest()
