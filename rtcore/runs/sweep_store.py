"""A sweep's output folder: one verified record per finished unit, merged into the tables a user reads.

Layout of ``DIR``::

    sweep.json                 the sweep (its table of keys) and its units (id, digest), rewritten per run
    units/<id>.summary.csv     a finished unit's summary rows (one per eps), as `evaluate --out` writes them
    units/<id>.samples.csv     its per-sample rows
    units/<id>.json            its record, written last: the unit's spec and digest, the code versions of
                               the cached computations, the sha256 of both CSVs, its seconds
    summary.csv                every finished unit's summary rows, in the sweep's order
    samples.csv                (or samples.parquet) every finished unit's per-sample rows
    failures.csv               the units that failed in the last run, with their error

Every file is written atomically (:func:`rtcore._io.atomic_write`); a unit's record is written after
its CSVs, so a unit counts as done only when all three are complete. :meth:`SweepStore.stored` uses a
record only when its digest and code versions are the unit's and both CSVs match their checksums;
anything else is recomputed.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_write, file_sha256
from ..cache import CODE_VERSIONS
from ..tables import concat_tables
from .spec import SPEC_VERSION
from .sweep_spec import SweepSpec, SweepUnit

#: bump when the layout of a unit record changes
RECORD_VERSION = 1
FAILURE_COLUMNS = ["unit", "backbone", "task", "probe", "transfer", "norm", "n", "attack", "seed", "error_type",
                   "error", "attempts", "traceback"]
SAMPLE_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class SweepUnitResult:
    """A finished unit's tables, as stored (read back from its verified CSVs)."""

    unit_id: str
    summary: pd.DataFrame
    samples: pd.DataFrame
    seconds: float


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """An output folder that exists or can be created, and can be written (checked before any work)."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the sweep's output folder is empty; give one, e.g. --out sweeps/zoo")
    p = Path(text).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"output folder {str(p)!r} is a file; give a folder (it is created if needed)")
    try:
        (p / "units").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"output folder {str(p)!r} cannot be created ({e}); give a writable folder") from None
    if not os.access(p, os.W_OK | os.X_OK) or not os.access(p / "units", os.W_OK | os.X_OK):
        raise ValueError(f"output folder {str(p)!r} is not writable; give another folder")
    return p


def read_csv(data: bytes | str | Path) -> pd.DataFrame:
    """A CSV written by this module (pandas writes floats in their shortest exact form and reads them back
    exactly; tested)."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    return pd.read_csv(src)


class SweepStore:
    """The output folder of one sweep (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = check_out_dir(root)
        self.units_dir = self.root / "units"
        #: stored unit files that failed verification: (unit id, reason)
        self.rejected: list[tuple[str, str]] = []

    # ---------------------------------------------------------------- paths
    def files(self, unit_id: str) -> tuple[Path, Path, Path]:
        """The summary CSV, samples CSV and record of a unit."""
        base = self.units_dir / unit_id
        return Path(f"{base}.summary.csv"), Path(f"{base}.samples.csv"), Path(f"{base}.json")

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.csv"

    @property
    def failures_path(self) -> Path:
        return self.root / "failures.csv"

    def samples_path(self, fmt: str = "csv") -> Path:
        return self.root / f"samples.{fmt}"

    # ---------------------------------------------------------------- units
    def write_sweep(self, spec: SweepSpec) -> None:
        """``sweep.json``: the sweep's keys and its units (ids and digests)."""
        body = {"sweep": spec.to_dict(), "digest": spec.digest(),
                "units": [{"id": u.id, "digest": u.digest, **u.labels()} for u in spec.units]}
        atomic_write(self.root / "sweep.json", (json.dumps(body, indent=1, default=str) + "\n").encode())

    def write(self, unit: SweepUnit, summary: pd.DataFrame, samples: pd.DataFrame, seconds: float,
              computed: bool, where: dict[str, Any] | None = None) -> None:
        """Store a finished unit: both CSVs, then its record (the unit is done once the record is there).
        ``where``: where it ran (host, pid, torch threads), kept in the record."""
        s_path, x_path, r_path = self.files(unit.id)
        s_bytes = summary.to_csv(index=False).encode()
        x_bytes = samples.to_csv(index=False).encode()
        atomic_write(s_path, s_bytes)
        atomic_write(x_path, x_bytes)
        record = {"record_version": RECORD_VERSION, "unit": unit.id, "spec_digest": unit.digest,
                  "spec": unit.spec.to_dict(), "spec_version": SPEC_VERSION, "code_versions": CODE_VERSIONS,
                  "summary_sha256": file_sha256(s_path), "samples_sha256": file_sha256(x_path),
                  "rows": [len(summary), len(samples)], "seconds": seconds, "computed": computed,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "driver": socket.gethostname(),
                  "ran_on": dict(where or {})}
        atomic_write(r_path, (json.dumps(record, indent=1, default=str) + "\n").encode())

    def check(self, unit: SweepUnit) -> str | None:
        """Why the stored result of ``unit`` cannot be used (None when it can, "" when there is none)."""
        s_path, x_path, r_path = self.files(unit.id)
        if not r_path.is_file():
            return ""
        try:
            rec = json.loads(r_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"its record is unreadable ({e})"
        if not isinstance(rec, dict) or rec.get("record_version") != RECORD_VERSION:
            return "its record has another layout"
        if rec.get("spec_digest") != unit.digest:
            return "its record belongs to another spec digest"
        if rec.get("spec_version") != SPEC_VERSION or rec.get("code_versions") != CODE_VERSIONS:
            return "it was computed by another version of the code"
        for path, key in ((s_path, "summary_sha256"), (x_path, "samples_sha256")):
            if not path.is_file():
                return f"{path.name} is missing"
            if file_sha256(path) != rec.get(key):
                return f"{path.name} does not match its checksum"
        return None

    def stored(self, unit: SweepUnit) -> bool:
        """Whether ``unit`` has a verified stored result; a bad one is noted in :attr:`rejected`."""
        why = self.check(unit)
        if why:
            self.rejected.append((unit.id, why))
        return why is None

    def read(self, unit_id: str) -> SweepUnitResult:
        """A stored unit's tables (call :meth:`stored` first)."""
        s_path, x_path, r_path = self.files(unit_id)
        rec = json.loads(r_path.read_text(encoding="utf-8"))
        return SweepUnitResult(unit_id, read_csv(s_path), read_csv(x_path), float(rec.get("seconds", float("nan"))))

    def read_summary(self, unit_id: str) -> pd.DataFrame:
        return read_csv(self.files(unit_id)[0])

    # ---------------------------------------------------------------- merged tables
    def merge_summary(self, unit_ids: Sequence[str]) -> pd.DataFrame:
        """Write ``summary.csv`` from the stored units ``unit_ids`` (in that order); return it."""
        frames = [self.read_summary(u) for u in unit_ids]
        summary = concat_tables(frames)
        atomic_write(self.summary_path, summary.to_csv(index=False).encode())
        return summary

    def merge_samples(self, unit_ids: Sequence[str], fmt: str = "csv") -> Path:
        """Write the per-sample table of the stored units (CSV, or parquet with pyarrow); return its path."""
        samples = concat_tables([read_csv(self.files(u)[1]) for u in unit_ids])
        path = self.samples_path(fmt)
        if fmt == "parquet":
            atomic_write(path, lambda tmp: samples.to_parquet(tmp, index=False))
        else:
            atomic_write(path, samples.to_csv(index=False).encode())
        other = self.samples_path("csv" if fmt == "parquet" else "parquet")
        if other.exists():
            other.unlink()  # one per-sample table, never a stale one beside it
        return path

    def write_failures(self, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
        """``failures.csv``: one row per failed unit (a header only when none failed)."""
        df = pd.DataFrame(list(rows), columns=FAILURE_COLUMNS)
        atomic_write(self.failures_path, df.to_csv(index=False).encode())
        return df

