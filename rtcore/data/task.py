"""The :class:`Task` container and task transforms (subset, relabel)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .._io import tensor_digest

# --------------------------------------------------------------------------- Task


@dataclass(frozen=True, eq=False, repr=False)
class Task:
    """A labelled image classification task with train and test splits.

    Images are (N, C, H, W) float32 in [0, 1], contiguous; labels (N,) int64 in
    ``0..num_classes-1``; ``classes[i]`` names label ``i``.  Construction
    validates all of this.  Tasks from :func:`create_task` are shared (memoised):
    do not modify their tensors in place.

    :attr:`digest` is the task's content identity (class names and the four tensors, not
    its name or where its files are): the same images read from a moved folder, or from an
    ``.npz`` holding them, give the same digest; one changed pixel gives another.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    source: str
    description: str = field(default="")

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise ValueError(f"task {self.name!r}: classes must be non-empty")
        if len(set(classes)) != len(classes):
            raise ValueError(f"task {self.name!r}: duplicate class names in {classes}")
        object.__setattr__(self, "classes", classes)
        shape = None
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
                raise ValueError(
                    f"task {self.name!r}: x_{split} must be a float32 tensor (N,C,H,W), got "
                    f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
                )
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
                raise ValueError(
                    f"task {self.name!r}: y_{split} must be an int64 tensor (N,), got "
                    f"{type(y).__name__} {getattr(y, 'dtype', '')} {tuple(getattr(y, 'shape', ()))}"
                )
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"task {self.name!r}: x_{split} has {x.shape[0]} images but y_{split} "
                    f"has {y.shape[0]} labels"
                )
            if x.shape[0] == 0:
                raise ValueError(f"task {self.name!r}: {split} split is empty")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(
                    f"task {self.name!r}: train images {tuple(shape)} and test images "
                    f"{tuple(x.shape[1:])} differ in shape"
                )
            shape = x.shape[1:]
            lo, hi = float(x.min()), float(x.max())
            if not (0.0 <= lo and hi <= 1.0):  # also rejects NaN
                raise ValueError(f"task {self.name!r}: x_{split} values span [{lo}, {hi}], not [0, 1]")
            ylo, yhi = int(y.min()), int(y.max())
            if ylo < 0 or yhi >= len(classes):
                raise ValueError(
                    f"task {self.name!r}: y_{split} labels span {ylo}..{yhi}, outside "
                    f"0..{len(classes) - 1} for {len(classes)} classes"
                )
            object.__setattr__(self, f"x_{split}", x.contiguous())
            object.__setattr__(self, f"y_{split}", y.contiguous())

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the class names and of the train/test tensors (dtype, shape, bytes); computed once."""
        h = hashlib.sha256()
        for c in self.classes:
            h.update(c.encode("utf-8", "surrogateescape") + b"\0")
        h.update(tensor_digest(self.x_train, self.y_train, self.x_test, self.y_test).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Task(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.classes!r}, source={self.source!r})"
        )




# --------------------------------------------------------------------------- task transforms


def _check_label(value: object, k: int, what: str, context: str) -> int:
    """Return ``value`` as an int label in ``0..k-1`` or raise ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} {value!r} is not an int ({context})")
    if not 0 <= int(value) < k:
        raise ValueError(f"{what} {value!r} is out of range 0..{k - 1} ({context})")
    return int(value)


def _as_list(values: object) -> object:
    """numpy arrays and tensors -> plain lists, so they validate like sequences."""
    if isinstance(values, (np.ndarray, torch.Tensor)):
        return values.tolist()
    return values


def _map_labels(y: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply lookup table ``lut`` (old label -> new label, -1 = drop) to ``y``."""
    return lut[y]


def subset_task(task: Task, classes: Sequence[int], *, name: str | None = None) -> Task:
    """Keep only ``classes`` of ``task`` (in the given order) and relabel them ``0..k-1``.

    Example: ``subset_task(t, [5, 7])`` keeps classes 5 and 7 as new labels 0 and 1.
    """
    classes = _as_list(classes)  # type: ignore[assignment]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a sequence of ints, got {classes!r}")
    if len(classes) == 0:
        raise ValueError(f"classes must be non-empty, got {classes!r}")
    keep = [_check_label(c, task.num_classes, "class", f"task {task.name!r} has "
                         f"{task.num_classes} classes") for c in classes]
    dup = sorted({c for c in keep if keep.count(c) > 1})
    if dup:
        raise ValueError(f"duplicate classes {dup} in {list(classes)!r}")
    lut = torch.full((task.num_classes,), -1, dtype=torch.int64)
    lut[torch.tensor(keep)] = torch.arange(len(keep))
    splits = {}
    for split in ("train", "test"):
        y_new = _map_labels(getattr(task, f"y_{split}"), lut)
        m = y_new >= 0
        if not bool(m.any()):
            raise ValueError(f"classes {list(classes)!r} leave no {split} images in task {task.name!r}")
        splits[split] = (getattr(task, f"x_{split}")[m], y_new[m])
    new_name = name or f"{task.name}[{','.join(map(str, keep))}]"
    return Task(name=new_name, x_train=splits["train"][0], y_train=splits["train"][1],
                x_test=splits["test"][0], y_test=splits["test"][1],
                classes=tuple(task.classes[c] for c in keep), source=task.source,
                description=f"{task.description} Subset of classes {keep} of {task.name}.".strip())


def relabel_task(task: Task, mapping: Mapping[int, int] | Sequence[int],
                 class_names: Sequence[str], *, name: str | None = None) -> Task:
    """Merge/rename classes: old label ``c`` becomes ``mapping[c]``, named ``class_names[mapping[c]]``.

    ``mapping`` must cover every old class (a dict, or a sequence indexed by
    old label) and use every new label at least once.  To drop classes, call
    :func:`subset_task` first.
    """
    k_old = task.num_classes
    mapping = _as_list(mapping)  # type: ignore[assignment]
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names must be a sequence of strings, got {class_names!r}")
    k_new = len(class_names)
    if k_new == 0:
        raise ValueError(f"class_names must be non-empty, got {class_names!r}")
    if isinstance(mapping, Mapping):
        extra = sorted(set(mapping) - set(range(k_old)), key=repr)
        if extra:
            raise ValueError(f"mapping keys {extra} are not classes of task {task.name!r} "
                             f"(valid: 0..{k_old - 1})")
        missing = [c for c in range(k_old) if c not in mapping]
        if missing:
            raise ValueError(f"mapping does not cover old classes {missing} of task {task.name!r}")
        targets = [mapping[c] for c in range(k_old)]
    elif isinstance(mapping, Sequence) and not isinstance(mapping, (str, bytes)):
        if len(mapping) != k_old:
            raise ValueError(f"mapping has length {len(mapping)}, task {task.name!r} has {k_old} "
                             "classes; give one new label per old class")
        targets = list(mapping)
    else:
        raise ValueError(f"mapping must be a dict or a sequence, got {mapping!r}")
    new = [_check_label(t, k_new, f"new label for old class {c}:",
                        f"{k_new} class_names given") for c, t in enumerate(targets)]
    unused = sorted(set(range(k_new)) - set(new))
    if unused:
        raise ValueError(f"new labels {unused} ({[class_names[u] for u in unused]}) receive no old "
                         "class; drop them from class_names")
    lut = torch.tensor(new, dtype=torch.int64)
    return Task(name=name or f"{task.name}-relabelled", x_train=task.x_train,
                y_train=_map_labels(task.y_train, lut), x_test=task.x_test,
                y_test=_map_labels(task.y_test, lut), classes=tuple(class_names),
                source=task.source,
                description=f"{task.description} Relabelled {dict(enumerate(new))}.".strip())


