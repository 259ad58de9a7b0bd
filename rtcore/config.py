"""Shared definitions: threat models, epsilon checks and matching, paths, environment variables.

One home for each: the :class:`Norm` list, the eps checks, :func:`eps_key` (how two floats
name the same eps), the folder of bundled assets and the default cache folder.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path

import torch

#: environment variable naming the result cache folder
ENV_CACHE_DIR = "RTCORE_CACHE_DIR"
#: the repository's bundled weights, model cards and data
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
#: eps values are compared after rounding to this many decimals (slider floats, CSV round trips)
EPS_DECIMALS = 9


class Norm(str, Enum):
    """Threat model ``B_p(x, eps)``: ``linf`` (p = inf) or ``l2`` (p = 2)."""

    LINF = "linf"
    L2 = "l2"

    def __str__(self) -> str:
        return self.value

    @property
    def dual(self) -> float:
        """The dual norm's exponent q (1 for linf, 2 for l2)."""
        return 1.0 if self is Norm.LINF else 2.0


NORMS: tuple[str, ...] = tuple(n.value for n in Norm)


def check_norm(norm: str | Norm) -> str:
    """Return ``norm`` as its string value if it is a supported threat model, else raise."""
    value = norm.value if isinstance(norm, Norm) else norm
    if value not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; use one of {list(NORMS)}")
    return value


#: the largest l2 budget accepted: an l2 ball of radius sqrt(d) covers [0,1]^d, so larger values only
#: catch unit mistakes (e.g. eps given in 0-255 units) for images up to 3 x 64 x 64
MAX_L2_EPS = 100.0


def _as_eps(value: object, norm: str = "linf") -> float:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"eps={value!r} is a string; give a number in [0, 1], e.g. eps=8/255 (0.0314), not '8/255'")
    if isinstance(value, bool):
        raise ValueError(f"eps={value!r} is a bool; give a number in [0, 1]")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"eps tensor has shape {tuple(value.shape)}; give one number or a list of numbers")
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise ValueError(f"eps={value!r} ({type(value).__name__}) is not a number; give a value in [0, 1]")
    e = float(value)
    if math.isnan(e) or math.isinf(e):
        raise ValueError(f"eps={e} is not a finite number; give a value in [0, 1], e.g. 8/255 = 0.0314")
    if e < 0:
        raise ValueError(f"eps={e} is negative; the perturbation budget must be in [0, 1]")
    if norm == "linf" and e > 1:
        raise ValueError(f"eps={e} is above 1; eps is measured in [0, 1] pixel units (for example 8/255 = 0.0314, not 8)")
    if e > MAX_L2_EPS:
        raise ValueError(f"eps={e} is above {MAX_L2_EPS:g}; an l2 eps is the norm of a perturbation of [0, 1] pixels "
                         f"(e.g. 0.5), not a value in 0-255 units")
    return e + 0.0  # -0.0 -> 0.0


def _is_scalar(eps: object) -> bool:
    if isinstance(eps, torch.Tensor):
        return eps.ndim == 0
    return isinstance(eps, (numbers.Real, str, bytes)) or (hasattr(eps, "ndim") and getattr(eps, "ndim") == 0)


def check_eps(eps: object, norm: str | Norm = "linf") -> tuple[tuple[float, ...], bool]:
    """Validate one epsilon or a list of them (numpy and torch scalars accepted, strings refused).

    Returns ``(eps_values, scalar)`` where ``scalar`` says whether a single number was given.
    Epsilon is measured in [0, 1] pixel units: a linf eps lies in [0, 1]; an l2 eps (the norm of
    the whole perturbation) may exceed 1, up to :data:`MAX_L2_EPS`.
    """
    norm = check_norm(norm)
    if _is_scalar(eps):
        return (_as_eps(eps, norm),), True
    if not isinstance(eps, Iterable):
        raise ValueError(f"eps={eps!r} is not a number or a list of numbers")
    values = tuple(_as_eps(e, norm) for e in eps)
    if not values:
        raise ValueError("eps is an empty list; give at least one value in [0, 1], e.g. eps=[0.03, 0.1]")
    return values, False


def eps_key(eps: float) -> float:
    """The canonical form of an eps: rounded to :data:`EPS_DECIMALS` decimals (``-0.0`` -> ``0.0``)."""
    return round(float(eps), EPS_DECIMALS) + 0.0


def eps_equal(a: float, b: float) -> bool:
    """Whether two floats name the same eps (after :func:`eps_key`)."""
    return eps_key(a) == eps_key(b)


def eps_mask(values: Sequence[float] | object, eps: float) -> object:
    """Boolean mask of ``values`` (a pandas Series or array) equal to ``eps`` under :func:`eps_key`."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return np.round(arr, EPS_DECIMALS) == eps_key(eps)


def unique_eps(values: Iterable[float]) -> tuple[float, ...]:
    """Canonical eps values in first-seen order, without duplicates."""
    return tuple(dict.fromkeys(eps_key(e) for e in values))


def default_cache_dir() -> Path:
    """``$RTCORE_CACHE_DIR`` or, when it is not set, ``~/.cache/rtcore``.

    ``RTCORE_CACHE_DIR`` set to an empty (or blank) value is an error, not a silent fall-back to the
    home folder: an empty value is usually a variable that was meant to hold a path.
    """
    from .errors import CacheDirError

    env = os.environ.get(ENV_CACHE_DIR)
    if env is None:
        return Path.home() / ".cache" / "rtcore"
    if not env.strip():
        raise CacheDirError(f"{ENV_CACHE_DIR} is set but empty ({env!r}); set it to a folder "
                            f"(export {ENV_CACHE_DIR}=/path/to/cache) or unset it (unset {ENV_CACHE_DIR}) "
                            f"to use ~/.cache/rtcore")
    return _own_folder(Path(env).expanduser(), f"{ENV_CACHE_DIR}={env!r}")


#: folders that hold the system's own files: a cache there would mix rtcore's ``results/``, ``tasks/``,
#: ``sweeps/`` ... with them (a run as root wrote ``/results`` and ``/tasks``). Exact matches; anything
#: under :data:`VIRTUAL_FOLDERS` too. The home folder itself and every file-system root are refused as well.
SYSTEM_FOLDERS: frozenset[str] = frozenset({
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/usr", "/usr/bin", "/usr/lib", "/usr/lib64",
    "/usr/local", "/usr/sbin", "/usr/share", "/var", "/var/lib", "/Applications", "/Library", "/System", "/Users",
    "/Volumes", "/private"})
#: kernel file systems: no folder under them is a place for files
VIRTUAL_FOLDERS: tuple[str, ...] = ("/proc", "/sys")


def system_folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a cache folder (a file-system root, a system folder, the home folder
    itself), or None. Checked on the path as written (made absolute) and with links resolved."""
    p = Path(path).expanduser()
    home = {os.path.normpath(os.path.abspath(Path.home()))}
    home.add(os.path.realpath(next(iter(home))))
    for form in dict.fromkeys((os.path.normpath(os.path.abspath(p)), os.path.realpath(p))):
        if form == Path(form).anchor:
            return "is the root of the file system"
        if form in home:
            return "is the home folder itself"
        if form in SYSTEM_FOLDERS or any(form.startswith(v + os.sep) for v in VIRTUAL_FOLDERS):
            return f"is the system folder {form!r}"
    return None


def _own_folder(path: Path, given: str) -> Path:
    """``path`` unless it is a root, a system folder or the home folder (:func:`system_folder_problem`)."""
    problem = system_folder_problem(path)
    if problem:
        from .errors import CacheDirError

        raise CacheDirError(f"cache folder {given} {problem}; rtcore would write its results/, tasks/ and sweeps/ "
                            f"folders straight into it. Fix: give a folder of rtcore's own, e.g. "
                            f"--cache-dir ~/.cache/rtcore or {ENV_CACHE_DIR}=/path/to/rtcore-cache")
    return path


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder a caller asked for: ``None`` is :func:`default_cache_dir`; an empty path
    (``""``, which would silently mean the current folder), a file-system root, a system folder or the
    home folder itself (:func:`system_folder_problem`) is refused with :class:`CacheDirError`."""
    from .errors import CacheDirError

    if cache_dir is None:
        return default_cache_dir()
    if isinstance(cache_dir, bytes) or not isinstance(cache_dir, (str, os.PathLike)):
        raise CacheDirError(f"cache_dir={cache_dir!r} ({type(cache_dir).__name__}) must be a folder path (str or "
                            f"pathlib.Path), or None for the default {ENV_CACHE_DIR} / ~/.cache/rtcore")
    text = os.fspath(cache_dir)
    if not isinstance(text, str) or not text.strip():
        raise CacheDirError(f"cache_dir={text!r} is empty, which would mean the current folder; give a folder "
                            f"path (--cache-dir /path/to/cache), or leave it out for the default "
                            f"({ENV_CACHE_DIR} or ~/.cache/rtcore)")
    return _own_folder(Path(text).expanduser(), f"cache_dir={text!r}")


#: eps grids: k/255 for linf (1/255, 2/255 and the paper's budget 4/255 included: its 8/255 on inputs in
#: [-1, 1] is 4/255 in [0, 1] pixels), and a matching l2 grid k * 0.1 (same k, 25.5x the linf radius)
GRID_STEPS: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
L2_UNIT = 0.1


def eps_grid(norm: str | Norm, steps: tuple[int, ...] = GRID_STEPS) -> tuple[float, ...]:
    """The eps grid of a norm: ``k/255`` (linf) or ``k * 0.1`` (l2) for ``k`` in ``steps``."""
    unit = 1 / 255 if check_norm(norm) == "linf" else L2_UNIT
    return tuple(eps_key(k * unit) for k in steps)


def eps_text(e: float, norm: str | Norm | None = None) -> str | float:
    """An eps as a file, a command line or a table writes it: ``"8/255"`` where it is k/255 for a whole k > 0,
    else the number (``0.0``, ``0.5``). With its ``norm``, always text, as titles and links name it: ``"4/255"``
    or ``"12.75/255"`` (linf, in 1/255 steps), ``"0.4"`` (l2), ``"0"``; the shortest that
    :func:`rtcore.runs.parse_eps_text` reads back to the same eps."""
    k = round(float(e) * 255)
    if norm is None:
        return f"{k}/255" if k > 0 and eps_key(k / 255) == eps_key(e) else float(e)
    if float(e) == 0:
        return "0"
    scale = 255.0 if check_norm(norm) == "linf" else 1.0
    texts = [f"{float(e) * scale:.{digits}g}" for digits in range(3, 16)]
    text = next((t for t in texts if eps_key(float(t) / scale) == eps_key(e)), texts[-1])
    return f"{text}/255" if scale == 255.0 else text


def default_eps(norm: str | Norm) -> float:
    """The paper's budget on this grid: 4/255 (linf) or 0.4 (l2)."""
    return eps_grid(norm, (4,))[0]


def nearest_eps(eps: float, options: Iterable[float]) -> float:
    """The value of ``options`` nearest to ``eps`` (a cursor that only sits on computed values)."""
    return min(options, key=lambda o: abs(float(o) - float(eps)))


def eps_steps(eps: float, norm: str | Norm) -> float:
    """``eps`` in grid units: ``eps * 255`` (linf) or ``eps / 0.1`` (l2)."""
    return float(eps) * 255 if check_norm(norm) == "linf" else float(eps) / L2_UNIT


#: the probe-training budget of the Delta-aware probe when none is given (2/255 linf, 0.2 l2)
DEFAULT_PROBE_EPS: dict[str, float] = {"linf": eps_key(2 / 255), "l2": eps_key(2 * L2_UNIT)}
