"""Try bad inputs, damaged files and faults through the command line, each in a private cache, and
report how each ended: a clear error (exit 2, no traceback, before any work), or a correct result.

    python scripts/bad_inputs.py            # prints one line per case and a count per outcome

A case passes when the command exits as expected, prints no traceback and, for refused input,
computed nothing (no result entry in its cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

BASE = ["--backbone", "fmnist-cnn-standard", "--tasks", "shapes", "--eps", "2/255", "--n", "8", "--attack", "fast"]


@dataclass
class Case:
    name: str
    args: list[str]
    expect: int = 2
    message: str = ""


def _flags(base: list[str], **replace: list[str]) -> list[str]:
    out, i = [], 0
    keys = {f"--{k.replace('_', '-')}": v for k, v in replace.items()}
    while i < len(base):
        j = i + 1
        while j < len(base) and not base[j].startswith("--"):
            j += 1
        if base[i] in keys:
            out += [base[i], *keys.pop(base[i])]
        else:
            out += base[i:j]
        i = j
    for k, v in keys.items():
        out += [k, *v]
    return out


def cases(d: Path) -> list[Case]:
    (d / "a_dir").mkdir()
    (d / "file").write_text("x")
    os.mkfifo(d / "fifo")
    (d / "zero").symlink_to("/dev/zero")
    (d / "empty.safetensors").write_bytes(b"")
    (d / "pickle.pt").write_bytes(b"\x80\x04K\x01.")
    from safetensors.torch import load_file

    from rtcore.models import BUNDLED_DIR

    state = load_file(str(BUNDLED_DIR / "fmnist-cnn-standard.safetensors"))
    save_file({k: v.to(torch.int32) for k, v in state.items()}, str(d / "ints.safetensors"))
    (d / "spec_typo.toml").write_text('backbone = "fmnist-cnn-standard"\ntasks = ["shapes"]\neps = [0.01]\nstep = 3\n')
    (d / "spec_bad.toml").write_text('backbone = "fmnist-cnn-standard"\ntasks = ["shapes"\n')
    (d / "spec.json").write_text('{"backbone": "fmnist-cnn-standard", "tasks": "shapes", "eps": [2]}')
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)
    (d / "bad.npz").write_bytes(b"PK not really")
    (d / "folder_one_split" / "train" / "a").mkdir(parents=True)
    out = [
        Case("eps above 1 (linf)", _flags(BASE, eps=["2"]), message="above 1"),
        Case("eps negative", _flags(BASE, eps=["-0.1"]), message="negative"),
        Case("eps nan", _flags(BASE, eps=["nan"]), message="not a finite"),
        Case("eps inf", _flags(BASE, eps=["inf"]), message="not a finite"),
        Case("eps text", _flags(BASE, eps=["eight"]), message="not a number"),
        Case("l2 eps above 100", _flags(BASE, eps=["150"], norm=["l2"]), message="above 100"),
        Case("l2 eps 1.6 is fine", _flags(BASE, eps=["1.6"], norm=["l2"]), expect=0),
        Case("unknown task", _flags(BASE, tasks=["nope"]), message="valid"),
        Case("duplicate task", _flags(BASE, tasks=["shapes", "shapes"]), message="more than once"),
        Case("missing folder task", _flags(BASE, tasks=[f"folder:{d}/nothing"]), message="no such"),
        Case("folder with one split", _flags(BASE, tasks=[f"folder:{d}/folder_one_split"]), message="test"),
        Case("broken npz", _flags(BASE, tasks=[f"npz:{d}/bad.npz"]), message="npz"),
        Case("unknown backbone", _flags(BASE, backbone=["nope"]), message="unknown backbone"),
        Case("empty timm name", _flags(BASE, backbone=["timm:"]), message="timm"),
        Case("n zero", _flags(BASE, n=["0"]), message="positive"),
        Case("seed negative", _flags(BASE, seed=["-1"]), message="seed"),
        Case("huge seed is fine", _flags(BASE, seed=[str(2**62)]), expect=0),
        Case("probe-eps without robust", _flags(BASE, probe_eps=["0.01"]), message="drop it"),
        Case("probe-C with logistic-std", _flags(BASE, probe=["logistic-std"], probe_C=["2"]), message="no C"),
        Case("probe-C zero", _flags(BASE, probe_C=["0"]), message="positive"),
        Case("transfer-k without ft-last-k", _flags(BASE, transfer_k=["2"]), message="ft-last-k"),
        Case("transfer-k 2.5", _flags(BASE, transfer=["ft-last-k"], transfer_k=["2.5"]), message="whole number"),
        Case("transfer-k beyond the blocks", _flags(BASE, transfer=["ft-last-k"], transfer_k=["99"]), message="blocks"),
        Case("weights: a folder", _flags(BASE, weights=[str(d / "a_dir")]), message="directory"),
        Case("weights: a FIFO", _flags(BASE, weights=[str(d / "fifo")]), message="FIFO"),
        Case("weights: /dev/zero link", _flags(BASE, weights=[str(d / "zero")]), message="device"),
        Case("weights: missing", _flags(BASE, weights=[str(d / "none.safetensors")]), message="does not exist"),
        Case("weights: empty file", _flags(BASE, weights=[str(d / "empty.safetensors")]), message="safetensors"),
        Case("weights: pickle", _flags(BASE, weights=[str(d / "pickle.pt")]), message="safetensors"),
        Case("weights: int32 tensors", _flags(BASE, weights=[str(d / "ints.safetensors")]), message="int32"),
        Case("weights with --no-pretrained", _flags(BASE, weights=[str(d / "ints.safetensors")], no_pretrained=[]),
             message="not both"),
        Case("--out is a folder", _flags(BASE, out=[str(d / "a_dir")]), message="folder"),
        Case("--out under a file", _flags(BASE, out=[str(d / "file" / "x.csv")]), message="not a folder"),
        Case("--out in a missing folder", _flags(BASE, out=[str(d / "no" / "x.csv")]), message="does not exist"),
        Case("--out in /proc", _flags(BASE, out=["/proc/x.csv"]), message="cannot be written"),
        *([] if os.geteuid() == 0 else  # root writes into read-only folders
          [Case("--out read-only folder", _flags(BASE, out=[str(d / "ro" / "x.csv")]), message="cannot be written")]),
        Case("--out = --samples-out", _flags(BASE, out=[str(d / "x.csv")], samples_out=[str(d / "x.csv")]),
             message="same file"),
        Case("--cache-dir empty", _flags(BASE, cache_dir=[""]), message="empty"),
        Case("--cache-dir is a file", _flags(BASE, cache_dir=[str(d / "file")]), message="file"),
        Case("--spec with flags", ["--spec", str(d / "spec_typo.toml"), "--n", "8"], message="not both"),
        Case("--spec typo key", ["--spec", str(d / "spec_typo.toml")], message="unknown spec keys"),
        Case("--spec bad TOML", ["--spec", str(d / "spec_bad.toml")], message="not valid TOML"),
        Case("--spec bad eps (JSON)", ["--spec", str(d / "spec.json")], message="above 1"),
        Case("--spec missing", ["--spec", str(d / "nothing.toml")], message="does not exist"),
        Case("--spec a folder", ["--spec", str(d / "a_dir")], message="folder"),
        Case("no backbone", ["--tasks", "shapes", "--eps", "0.01"], message="--backbone"),
    ]
    return out


def run(case: Case, d: Path, python: str) -> tuple[bool, str]:
    cache = Path(tempfile.mkdtemp(dir=d, prefix="cache-"))
    args = case.args if "--cache-dir" in case.args else [*case.args, "--cache-dir", str(cache)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([python, "-m", "rtcore", "evaluate", *args], capture_output=True, text=True, env=env,
                       timeout=900, cwd=d)
    err = p.stderr.strip().splitlines()
    last = next((line for line in reversed(err) if line.strip()), "")
    ok = p.returncode == case.expect and "Traceback" not in p.stderr
    if case.expect == 2:
        ok = ok and case.message.lower() in p.stderr.lower() and not (cache / "results").exists() or \
            (ok and case.message.lower() in p.stderr.lower() and not any((cache / "results").rglob("*.safetensors")))
    return ok, f"exit {p.returncode}: {last[:150]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="rtcore-bad-"))
    try:
        todo = cases(d)
        passed = 0
        for c in todo:
            ok, what = run(c, d, args.python)
            passed += ok
            print(f"{'ok  ' if ok else 'FAIL'} {c.name:32s} {what}", flush=True)
        print(f"\n{passed} of {len(todo)} cases ended as expected")
        return 0 if passed == len(todo) else 1
    finally:
        os.chmod(d / "ro", 0o755)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
