"""The evaluation spec: every rule checked once with a message, files in and out, a stable digest,
and the CLI's flag and file forms giving identical CSVs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import rtcore
from rtcore.cli import main
from rtcore.config import eps_key
from rtcore.models import BUNDLED_DIR
from rtcore.runs import EvalSpec, load_spec

BASE = dict(backbone="fmnist-cnn-standard", tasks=("shapes", "glyphs"), eps=(1 / 255, 4 / 255), n=16, attack="fast")


def spec(**changes: object) -> EvalSpec:
    return EvalSpec(**{**BASE, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("changes, message", [
    (dict(tasks=("shapes", "shapes")), "given more than once"),
    (dict(tasks=()), "tasks is empty"),
    (dict(tasks=("nope",)), "valid"),
    (dict(tasks="shapes,glyphs"), "valid"),
    (dict(tasks=("folder:/no/such/folder",)), "no such folder"),
    (dict(eps=(2.0,)), "above 1"),
    (dict(eps=(-0.1,)), "negative"),
    (dict(eps=("8",)), "above 1"),
    (dict(eps=("-1/255",)), r"eps='-1/255'.*negative"),
    (dict(eps=("1/0",)), "divides by zero"),
    (dict(eps=("nan",)), r"eps='nan'.*not a finite number"),
    (dict(eps=("inf",)), r"eps='inf'.*not a finite number"),
    (dict(eps=("1e999",)), r"eps='1e999'.*not a finite number"),
    (dict(eps=("eight",)), r"eps='eight' is not a number.*8/255"),
    (dict(eps=("8/255", 0.0313725490196)), r"eps lists 0.031372549 twice \(as '8/255' and 0.0313725490196\)"),
    (dict(n=100000), r"n=100000 but task 'shapes' has 1500 test images; use n = 1500 or n = \"all\""),
    (dict(n="some"), "or \"all\""),
    (dict(eps=()), "empty"),
    (dict(norm="l3"), "not supported"),
    (dict(n=0), "positive integer"),
    (dict(n=2.5), "positive integer"),
    (dict(seed=-1), "out of range"),
    (dict(attack="hard"), "unknown"),
    (dict(probe="svm"), "probe='svm' is unknown"),
    (dict(probe_C=0), "positive number"),
    (dict(probe="logistic-std", probe_C=2.0), "probe_C=2.0 applies to probes that take a C.*drop probe_C"),
    (dict(probe_eps=0.01), "applies to Delta-aware probes"),
    (dict(transfer="finetune"), "transfer='finetune' is unknown"),
    (dict(transfer_k=2), "transfer_k=2 applies to transfer 'ft-last-k'"),
    (dict(finetune={"epochs": 2}), "finetune settings apply to the transfer methods that train"),
    (dict(finetune={"epoch": 2}), "unknown finetune keys"),
    (dict(sanity_subset=64), "sanity_subset=64 applies to sanity = true"),
    (dict(device="gpu"), "device=.gpu. must be"),
    (dict(batch_size=0), "batch_size"),
    (dict(precision="int8"), "precision='int8' is unknown"),
    (dict(transfer="ft-last-k", transfer_k=2.5), "not a whole number"),
    (dict(transfer="ft-last-k", transfer_k=0), ">= 1"),
    (dict(transfer="ft", probe="logistic-std"), "probe='logistic-std' applies to the transfer methods that fit"),
    (dict(transfer="lp-ft", probe="robust"), "frozen backbone's Delta"),
    (dict(backbone="no-such-backbone"), "unknown backbone"),
    (dict(backbone="timm:"), "names no timm model"),
    (dict(sanity="yes"), "true or false"),
    (dict(sanity_subset=0), "positive integer"),
])
def test_every_rule_is_checked_when_the_spec_is_built(changes: dict, message: str) -> None:
    with pytest.raises((ValueError, rtcore.RtcoreError), match=message):
        spec(**changes)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(rtcore.runs.spec.SpecError) as err:
        spec(backbone="fmnist-cnn-stndard", tasks=("shapez", "glyphs"), eps=("-1/255", "1/0"), n=0, probe="svm")
    assert len(err.value.problems) == 6 and "6 problems" in str(err.value)
    for word in ("fmnist-cnn-stndard", "shapez", "-1/255", "1/0", "n=0", "svm"):
        assert word in str(err.value)


def test_keyword_only_and_n_all() -> None:
    with pytest.raises(TypeError):
        EvalSpec("fmnist-cnn-standard", ("shapes",), (0.01,))  # type: ignore[misc]
    assert spec(n="all").n == "all" and spec(n="all").test_sizes() == {"shapes": 1500, "glyphs": 2000}
    assert spec(tasks=("shapes",), n="all").digest() == spec(tasks=("shapes",), n=1500).digest()
    assert spec(tasks=("shapes",), n="all").digest() != spec(tasks=("shapes",), n=1499).digest()
    assert spec(n=2.0e1).n == 20


def test_weights_are_checked_when_the_spec_is_built(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        spec(backbone=rtcore.BackboneRef("fmnist-cnn-standard", weights=str(bad)))
    with pytest.raises(ValueError, match="not both"):
        rtcore.BackboneRef("fmnist-cnn-standard", weights=str(bad), pretrained=False)


def test_values_are_normalised() -> None:
    s = spec(eps=(4 / 255, "1/255", 0.0))
    assert s.eps == (0.0, eps_key(1 / 255), eps_key(4 / 255))
    assert isinstance(s.backbone, rtcore.BackboneRef) and s.tasks == ("shapes", "glyphs")
    assert spec(tasks="shapes").tasks == ("shapes",)
    assert spec(transfer="ft-last-k").transfer_k == 1
    assert s == spec(eps=(0.0, 1 / 255, 4 / 255)) and hash(s) == hash(spec(eps=(0.0, 1 / 255, 4 / 255)))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_files_round_trip(tmp_path: Path, suffix: str) -> None:
    s = spec(probe="robust", probe_eps=2 / 255, sanity=True, head_attack=False, seed=3)
    path = tmp_path / f"spec{suffix}"
    path.write_text(s.to_toml() if suffix == ".toml" else s.to_json())
    assert load_spec(path) == s
    custom = spec(attack=rtcore.AttackSettings(steps=3, restarts=1, feature_restarts=1, losses=("margin",), targets=0))
    path.write_text(custom.to_toml() if suffix == ".toml" else custom.to_json())
    assert load_spec(path) == custom


def test_a_hand_written_file(tmp_path: Path) -> None:
    path = tmp_path / "zoo.toml"
    path.write_text('backbone = "fmnist-cnn-standard"\ntasks = ["shapes"]\neps = ["1/255", "4/255"]\nn = 16\n'
                    'attack = "fast"\n')
    assert load_spec(path) == spec(tasks=("shapes",))
    path.write_text('backbone = "fmnist-cnn-standard"\ntasks = ["shapes"]\neps = [0.01]\nsteps = 3\n')
    with pytest.raises(ValueError, match=r"zoo.toml.*unknown spec keys \['steps'\]"):
        load_spec(path)
    path.write_text('backbone = "fmnist-cnn-standard"\ntasks = ["shapes"\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    path.write_text('tasks = ["shapes"]\neps = [0.01]\n')
    with pytest.raises(ValueError, match="no 'backbone'"):
        load_spec(path)


def test_the_digest_is_stable_across_processes_and_names_what_changes_numbers(tmp_path: Path) -> None:
    s = spec()
    code = ("from rtcore.runs import EvalSpec; import json, sys; "
            "print(EvalSpec.from_dict(json.loads(sys.argv[1])).digest())")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(s.to_dict())], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == s.digest()
    assert len({s.digest(), spec(n=17).digest(), spec(seed=1).digest(), spec(attack="standard").digest(),
                spec(eps=(1 / 255,)).digest(), spec(probe="robust").digest()}) == 6
    assert spec(download=True).digest() == s.digest()  # changes no number


def test_the_digest_takes_weights_by_content_not_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "other.safetensors"
    for p in (a, b):
        p.parent.mkdir()
        shutil.copy(BUNDLED_DIR / "fmnist-cnn-standard.safetensors", p)
    sa = spec(backbone=rtcore.BackboneRef("fmnist-cnn-standard", weights=str(a)))
    sb = spec(backbone=rtcore.BackboneRef("fmnist-cnn-standard", weights=str(b)))
    assert sa != sb and sa.digest() == sb.digest()
    shutil.copy(BUNDLED_DIR / "fmnist-cnn-pgd-linf-0.1.safetensors", b)
    assert spec(backbone=rtcore.BackboneRef("fmnist-cnn-standard", weights=str(b))).digest() != sa.digest()


def test_module_backbones_and_task_objects_have_no_file_form(linear_case) -> None:
    from rtcore.pipeline import spec_from_arguments
    from tests.unit.test_pipeline import _linear_task

    s, g, given = spec_from_arguments(linear_case.backbone, [_linear_task(linear_case)], [0.05], n="all")
    assert s.backbone.is_module and given and len(s.digest()) == 64
    with pytest.raises(ValueError, match="spec file"):
        s.to_toml()
    t1, t2 = _linear_task(linear_case, "same"), _linear_task(linear_case, "same")
    with pytest.raises(ValueError, match="two different tasks are named 'same'"):
        spec_from_arguments(linear_case.backbone, [t1, t2], [0.05], n="all")


def _cli(tmp_path: Path, *args: str) -> int:
    return main(["evaluate", *args, "--cache-dir", str(tmp_path / "cache")])


def test_the_spec_file_and_the_flags_give_identical_csvs(tmp_path: Path) -> None:
    flags = ["--backbone", "fmnist-cnn-standard", "--tasks", "shapes", "glyphs", "--eps", "1/255", "4/255",
             "--n", "16", "--attack", "fast"]
    assert _cli(tmp_path, *flags, "--out", str(tmp_path / "a.csv"), "--samples-out", str(tmp_path / "a-s.csv"),
                "--save-spec", str(tmp_path / "zoo.toml")) == 0
    assert load_spec(tmp_path / "zoo.toml") == spec()
    assert _cli(tmp_path, "--spec", str(tmp_path / "zoo.toml"), "--out", str(tmp_path / "b.csv"),
                "--samples-out", str(tmp_path / "b-s.csv")) == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert (tmp_path / "a-s.csv").read_bytes() == (tmp_path / "b-s.csv").read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["--out", "{d}"], "is a folder"),
    (["--out", "{d}/missing/x.csv"], "does not exist"),
    (["--out", "{d}/x.csv", "--samples-out", "{d}/x.csv"], "the same file"),
    (["--out", ""], "is empty"),
    (["--tasks", "shapes", "shapes"], "more than once"),
    (["--probe-eps", "0.01"], "applies to Delta-aware probes"),
    (["--transfer-k", "2"], "transfer_k=2 applies to transfer 'ft-last-k'"),
    (["--n", "100000"], "has 1500 test images"),
    (["--eps", "1/0", "nan"], "2 problems"),
    (["--sanity-subset", "8"], "applies to sanity = true"),
    (["--transfer", "ft-last-k", "--transfer-k", "2.5"], "not a whole number"),
    (["--spec", "{d}/zoo.toml"], "not both"),
])
def test_bad_outputs_and_flags_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   extra: list[str], message: str) -> None:
    (tmp_path / "zoo.toml").write_text(spec().to_toml())
    args = {"--backbone": ["fmnist-cnn-standard"], "--tasks": ["shapes"], "--eps": ["0.01"], "--n": ["8"],
            "--attack": ["fast"]}
    i = 0
    rest: list[str] = []
    while i < len(extra):
        j = i + 1
        while j < len(extra) and not extra[j].startswith("--"):
            j += 1
        vals = [v.format(d=tmp_path) for v in extra[i + 1:j]]
        if extra[i] in args:
            args[extra[i]] = vals
        else:
            rest += [extra[i], *vals]
        i = j
    argv = [x for k, v in args.items() for x in (k, *v)] + rest
    assert _cli(tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "results").exists()  # nothing was computed


@pytest.mark.parametrize(("key", "value"), [("pretrained", "false"), ("pretrained", 0), ("label", ""), ("label", 3)])
def test_backbone_fields_have_one_rule_in_spec_and_sweep_files(key: str, value: object) -> None:
    """``pretrained = "false"`` must not mean pretrained; the evaluation spec and the sweep refuse alike."""
    from rtcore.runs.sweep_spec import SweepSpec

    with pytest.raises(ValueError, match=f"{key}={value!r} must be"):
        EvalSpec.from_dict({"backbone": "fmnist-cnn-standard", "tasks": ["shapes"], "eps": [0.01], key: value})
    with pytest.raises(ValueError, match=f"{key}={value!r} must be"):
        SweepSpec.from_dict({"backbones": [{"backbone": "fmnist-cnn-standard", key: value}], "tasks": ["shapes"],
                             "eps": [0.01]})


@pytest.mark.parametrize("changes", [{}, {"sanity": True, "sanity_subset": 16}, {"probe": "robust", "probe_eps": 0.01},
                                     {"transfer": "ft-last-k", "transfer_k": 2, "head_attack": False},
                                     {"probe_C": 0.5, "seed": 3, "norm": "l2", "eps": (0.25, 0.5)}])
def test_the_command_line_form_builds_the_same_spec(changes: dict[str, object]) -> None:
    """``EvalSpec.command()`` parsed by the CLI gives the spec back: nothing is dropped (label, sanity subset...)."""
    import shlex

    from rtcore.cli import _spec_from_args, build_parser
    from rtcore.models.ref import BackboneRef

    spec = EvalSpec(backbone=BackboneRef("fmnist-cnn-standard", label="my cnn"), tasks=("shapes", "fmnist-novel"), eps=(0.01, 0.03),
                    n=40).with_(**changes)
    argv = shlex.split(spec.command())[3:]
    assert _spec_from_args(build_parser().parse_args(argv)) == spec


def test_tasks_may_be_any_iterable_read_once() -> None:
    spec = EvalSpec(backbone="fmnist-cnn-standard", tasks=(t for t in ["shapes", "fmnist-novel"]), eps=(0.01,))
    assert spec.tasks == ("shapes", "fmnist-novel")


def test_execute_refuses_an_executor_together_with_options_or_of_another_spec(tmp_path: Path) -> None:
    from rtcore.runs import Executor, execute

    spec = EvalSpec(backbone="fmnist-cnn-standard", tasks=("shapes",), eps=(0.01,), n=8, attack="fast")
    ex = Executor(spec, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"not both"):
        execute(spec, executor=ex, cache_dir=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="executor= runs another spec"):
        execute(spec.with_(n=9), executor=ex)


def test_a_folder_task_enters_the_digest_by_the_files_its_reader_reads(tmp_path: Path) -> None:
    """A class folder that is a link is read by the folder reader, so an edited image in it changes the digest."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(path)

    root = tmp_path / "task"
    for rel in ("test/a/x.png", "train/b/x.png", "test/b/x.png"):
        image(root / rel)
    image(tmp_path / "elsewhere" / "x.png")
    (root / "train" / "a").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    spec = EvalSpec(backbone="fmnist-cnn-standard", tasks=(f"folder:{root}",), eps=(0.01,), n="all")
    before = spec.digest()
    (root / ".notes.txt").write_text("not an image the reader reads")
    assert EvalSpec(backbone="fmnist-cnn-standard", tasks=(f"folder:{root}",), eps=(0.01,), n="all").digest() == before
    image(tmp_path / "elsewhere" / "x.png")
    assert EvalSpec(backbone="fmnist-cnn-standard", tasks=(f"folder:{root}",), eps=(0.01,), n="all").digest() != before
