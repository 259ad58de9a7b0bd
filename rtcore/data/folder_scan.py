"""Listing an image folder in torchvision's ImageFolder layout (``folder:PATH`` tasks) without opening an image:
its classes, its files by split with their labels and stat data, and the digest of their contents that keys the
disk cache (:mod:`rtcore.data.folder` decodes them).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .._io import file_sha256
from .refs import TaskDataError, UserRef, missing_error

__all__ = ["IMAGE_FORMATS", "RACY_WINDOW_S", "FolderListing", "image_extensions", "scan_folder"]

#: files modified this recently make a listing untrustworthy as a cache key
RACY_WINDOW_S = 2.0
_DIGESTS: dict[tuple[str, str], str] = {}  # FolderListing.digest by (root, stat listing)
#: Pillow formats read from folders: decoded in-process, no external programs
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA", "QOI",
                                  "JPEG2000", "AVIF", "SGI", "PCX")
_SKIPPED_NAMES = frozenset({"thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class _File:
    rel: str  # posix path relative to the task folder
    path: str
    label: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


@dataclass(frozen=True)
class FolderListing:
    """The image files of a folder task, by split, with their labels and stat data."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[_File, ...]
    test: tuple[_File, ...]

    def digest(self) -> str:
        """sha256 of (relative path, content sha256) of every file: the disk-cache key. It follows the bytes, so a
        folder with other pixels never reads another's cached arrays (whatever the sizes and mtimes), and a moved
        folder keeps its key. Hashing costs far less than decoding; memoised per process by the stat listing
        (:meth:`signature`), so the task reader and a spec's digest hash the files once."""
        memo = (str(self.root), repr(self.signature()))
        if memo in _DIGESTS:
            return _DIGESTS[memo]
        h = hashlib.sha256()
        for c in self.classes:
            h.update(c.encode("utf-8", "surrogateescape") + b"\0")
        for f in (*self.train, *self.test):
            try:
                content = file_sha256(self.root / f.rel)
            except OSError as exc:
                raise TaskDataError(f"folder:{self.root}: cannot read {f.rel} ({exc.strerror or exc}). Fix: make "
                                    "the file readable or remove it") from None
            h.update(f"{f.rel}\0{content}\0".encode("utf-8", "surrogateescape"))
        _DIGESTS[memo] = h.hexdigest()
        return _DIGESTS[memo]

    def signature(self) -> tuple[object, ...]:
        """Everything stat says about the files (adds ctime and inode): the in-process memo key."""
        return (self.classes, [(f.rel, f.size, f.mtime_ns, f.ctime_ns, f.ino) for f in (*self.train, *self.test)])

    def racy(self) -> bool:
        """Whether a file was modified in the last :data:`RACY_WINDOW_S` seconds (or in the future)."""
        newest = max(f.mtime_ns for f in (*self.train, *self.test))
        return newest >= time.time_ns() - int(RACY_WINDOW_S * 1e9)


def image_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) read as images: those Pillow registers for :data:`IMAGE_FORMATS`."""
    from PIL import Image

    exts = {e.lower() for e, fmt in Image.registered_extensions().items() if fmt in IMAGE_FORMATS}
    return frozenset(exts | {".mpo"})  # multi-picture JPEG: opened by the JPEG reader


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SKIPPED_NAMES or name == "__MACOSX"


def _layout_hint(root: Path) -> str:
    return f"arrange the images as {root}/train/<class>/<image> and {root}/test/<class>/<image>"


def _class_dirs(root: Path, split: str) -> list[str]:
    folder = root / split
    if not folder.is_dir():
        found = sorted(e.name for e in os.scandir(root) if not _skipped(e.name))
        raise TaskDataError(f"folder:{root} has no {split}/ folder (it holds: {', '.join(found) or 'nothing'}). "
                            f"Fix: {_layout_hint(root)}")
    exts = image_extensions()
    classes, strays = [], []
    with os.scandir(folder) as it:
        for e in it:
            if _skipped(e.name):
                continue
            if e.is_dir():
                classes.append(e.name)
            elif Path(e.name).suffix.lower() in exts:
                strays.append(e.name)
    if strays:
        shown = ", ".join(sorted(strays)[:3])
        raise TaskDataError(f"folder:{root}: {split}/ holds images outside class folders ({shown}"
                            f"{', ...' if len(strays) > 3 else ''}). Fix: move each image into {split}/<class>/")
    if not classes:
        raise TaskDataError(f"folder:{root}: {split}/ has no class folders. Fix: {_layout_hint(root)}")
    return sorted(classes)


def _class_files(root: Path, split: str, cls: str, label: int, exts: frozenset[str]) -> list[_File]:
    """The image files under ``root/split/cls``, recursive, symlinked folders followed once, in
    torchvision's order (folders by path, then files by name)."""
    top = os.path.join(root, split, cls)
    cut = len(str(root)) + 1
    out: list[tuple[str, str, _File]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for fn in filenames:
            if _skipped(fn):
                continue
            path = os.path.join(dirpath, fn)
            ext = os.path.splitext(fn)[1].lower()
            if ext not in exts:
                raise TaskDataError(
                    f"{path}: not an image file rtcore reads (extension {ext or 'none'!r}; read: "
                    f"{', '.join(sorted(exts))}). Fix: convert it to PNG or JPEG, or move it out of {top}")
            try:
                st = os.stat(path)
            except OSError as exc:
                raise TaskDataError(f"{path}: cannot be read ({exc}). Fix: repair or remove the file") from exc
            if not stat.S_ISREG(st.st_mode):
                raise TaskDataError(f"{path}: not a regular file (a pipe, device or socket). Fix: remove it from {top}")
            rel = path[cut:].replace(os.sep, "/")
            out.append((dirpath, fn, _File(rel, path, label, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [f for _, _, f in out]


def scan_folder(root: str | os.PathLike[str]) -> FolderListing:
    """List a ``folder:`` task's images and check the layout (no image is opened).

    Checks: the folder exists (else :class:`TaskUnavailableError`), has ``train/`` and ``test/``
    with the same class folders, at least two classes, at least one image per class and split,
    and no file that is not an image (see the module docstring).
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.exists():
        raise missing_error(UserRef("folder", root))
    if not root.is_dir():
        hint = f" (an array file? use npz:{root})" if root.suffix.lower() == ".npz" else ""
        raise TaskDataError(f"folder:{root} is a file, not a folder{hint}. Fix: {_layout_hint(root)}")
    train, test = _class_dirs(root, "train"), _class_dirs(root, "test")
    only = {s: sorted(set(a) - set(b)) for s, a, b in (("train", train, test), ("test", test, train))}
    if only["train"] or only["test"]:
        parts = [f"{', '.join(map(repr, v))} only in {s}/" for s, v in only.items() if v]
        raise TaskDataError(f"folder:{root}: the splits have different classes ({'; '.join(parts)}). Fix: give "
                            "train/ and test/ the same class folders (the probe needs training images of every "
                            "class it is tested on)")
    if len(train) < 2:
        raise TaskDataError(f"folder:{root} has {len(train)} class ({train[0]!r}); a classification task needs at "
                            "least 2. Fix: add a folder per class in train/ and test/")
    exts = image_extensions()
    splits: dict[str, list[_File]] = {}
    for split in ("train", "test"):
        files: list[_File] = []
        for label, cls in enumerate(train):
            found = _class_files(root, split, cls, label, exts)
            if not found:
                raise TaskDataError(f"folder:{root}: class folder {split}/{cls} holds no images. Fix: add images "
                                    f"to it, or remove the class {cls!r} from both splits")
            files += found
        splits[split] = files
    return FolderListing(root, tuple(train), tuple(splits["train"]), tuple(splits["test"]))
