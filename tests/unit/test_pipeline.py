"""The pipeline: tidy table, relations on every row, exact bounds on linear backbones, caching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rtcore
from rtcore import cached as E
from rtcore.data import Task
from rtcore.models import BUNDLED_DIR

COLUMNS = ["backbone", "task", "transfer", "probe", "norm", "eps", "n", "clean_acc", "robust_acc", "bound", "bound_head",
           "bound_mean_delta", "bound_feature_only", "mean_delta", "median_delta", "mean_delta_head"]


def _linear_task(case, name: str = "linear-task") -> Task:
    g = torch.Generator().manual_seed(7)
    x_train = 0.3 + 0.4 * torch.rand(200, *case.x.shape[1:], generator=g)
    y_train = (case.backbone(x_train) @ case.W.T + case.b).argmax(1)
    y_train[:10] = torch.randint(0, case.W.shape[0], (10,), generator=g)
    return Task(name=name, x_train=x_train, y_train=y_train, x_test=case.x, y_test=case.y,
                classes=tuple(f"c{i}" for i in range(case.W.shape[0])), source="test", description="linear test task")


def _check_relations(df) -> None:
    """What must hold on every row: bound <= bound_head <= robust <= clean; clean <= adv <= lse <= loss bound."""
    assert (df["bound"] <= df["bound_head"] + 1e-12).all()
    assert (df["bound_head"] <= df["robust_acc"] + 1e-12).all()
    assert (df["robust_acc"] <= df["clean_acc"] + 1e-12).all()
    assert (df["bound_feature_only"] >= df["bound"] - 1e-12).all()
    assert (df["mean_delta_head"] <= df["mean_delta"] + 1e-9).all()
    assert (df["clean_loss"] <= df["adv_loss"] + 1e-12).all()
    assert (df["adv_loss"] <= df["loss_bound_lse"] + 1e-9).all()
    assert (df["loss_bound_lse"] <= df["loss_bound"] + 1e-9).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_linear_pipeline_relations_and_exact_bound(linear_case, norm: str, tmp_path: Path) -> None:
    task = _linear_task(linear_case)
    eps = [0.0, 0.05, 0.2]
    ev = rtcore.run_evaluation(linear_case.backbone, [task], eps, norm, n=64, attack="standard", cache_dir=str(tmp_path))
    df = ev.summary
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS and len(df) == len(eps)
    _check_relations(df)
    zero = df[df.eps == 0].iloc[0]
    assert zero.bound == zero.robust_acc == zero.clean_acc and zero.mean_delta == 0
    s = ev.samples
    assert len(s) == 64 * len(eps)
    assert (s["delta"] >= s["delta_feature"]).all() and (s["delta"] >= s["delta_e2e"]).all()
    assert (s["delta_head"] <= s["delta"] + 1e-9).all()
    assert (s["criterion_met"] <= s["criterion_met_head"]).all() and (s["criterion_met_head"] <= s["robust"]).all()
    probe = E.fit_probe(linear_case.backbone, task, rtcore.ResultCache(tmp_path))
    f = linear_case.backbone(linear_case.x)
    y = linear_case.y
    for e in eps:
        exact = linear_case.exact_delta(e, norm)
        # the bound with the exact supremum (a certificate) <= true robust accuracy <= empirical
        certified = rtcore.bound_criterion(f, y, probe.weight_, probe.bias_, torch.full((64,), exact))
        row = df[df.eps == e].iloc[0]
        assert float(certified.double().mean()) <= row.robust_acc + 1e-12
        assert row.mean_delta <= exact * (1 + 1e-5) + 1e-7
        exact_p = linear_case.exact_delta(e, norm, projector=rtcore.bounds.head_projector(probe.weight_))
        assert row.mean_delta_head <= exact_p * (1 + 1e-5) + 1e-7
        assert row.mean_delta_head >= 0.97 * exact_p  # the head-subspace attack finds the projected supremum


def test_cache_is_reused_per_eps_and_corrupt_entries_recomputed(linear_case, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    task = _linear_task(linear_case)
    calls: list[list[float]] = []

    class Counting(E.FeatureAttack):
        def __call__(self, x, y, eps, progress=None):  # type: ignore[no-untyped-def]
            if self.projector is None:  # the head-independent feature attack
                calls.append(list(eps))
            return super().__call__(x, y, eps, progress)

    monkeypatch.setattr(E, "FeatureAttack", Counting)
    first = rtcore.evaluate(linear_case.backbone, [task], [0.05, 0.1], n=32, attack="fast", cache_dir=str(tmp_path))
    again = rtcore.evaluate(linear_case.backbone, [task], [0.05, 0.1], n=32, attack="fast", cache_dir=str(tmp_path))
    assert calls == [[0.05], [0.1]], "each eps attacked on its own, once"
    cols = ["clean_acc", "robust_acc", "bound", "mean_delta"]
    assert first[cols].equals(again[cols])
    rtcore.evaluate(linear_case.backbone, [task], [0.05, 0.1, 0.15], n=32, attack="fast", cache_dir=str(tmp_path))
    assert calls[-1] == [0.15], "only the new eps is computed"
    entries = sorted((tmp_path / "results" / "feature_attack").glob("*.safetensors"))
    assert entries
    for p in entries:
        p.write_bytes(b"garbage")
    third = rtcore.evaluate(linear_case.backbone, [task], [0.05, 0.1], n=32, attack="fast", cache_dir=str(tmp_path))
    assert calls[-2:] == [[0.05], [0.1]], "corrupt entries are recomputed, never trusted"
    assert first[cols].equals(third[cols])


def test_results_do_not_depend_on_how_eps_were_grouped(linear_case, tmp_path: Path) -> None:
    """Staged work (one eps, then the others, as the dashboard does) and one run over every eps give
    identical per-sample tables: each eps is attacked on its own, the carry-over happens in the tables."""
    task = _linear_task(linear_case)
    eps = [0.0, 0.02, 0.05, 0.1]
    one = rtcore.run_evaluation(linear_case.backbone, [task], eps, n=32, attack="fast", cache_dir=str(tmp_path / "a"))
    staged = tmp_path / "b"
    rtcore.run_evaluation(linear_case.backbone, [task], [0.05], n=32, attack="fast", cache_dir=str(staged))
    rtcore.run_evaluation(linear_case.backbone, [task], [0.1, 0.02], n=32, attack="fast", cache_dir=str(staged))
    again = rtcore.run_evaluation(linear_case.backbone, [task], eps, n=32, attack="fast", cache_dir=str(staged))
    assert again.recomputed == []
    cols = [c for c in one.samples.columns]
    assert one.samples[cols].equals(again.samples[cols])
    s = one.samples.pivot(index="sample", columns="eps", values=["robust", "delta", "delta_head", "adv_loss"])
    for a, b in zip(eps, eps[1:]):  # monotone in eps per point, by the carry-over
        assert (s["robust"][b] <= s["robust"][a]).all()
        assert (s["delta"][b] >= s["delta"][a] - 1e-12).all() and (s["adv_loss"][b] >= s["adv_loss"][a] - 1e-12).all()
        assert (s["delta_head"][b] >= s["delta_head"][a] - 1e-12).all()


def test_carry_witnesses_takes_the_better_smaller_eps_witness() -> None:
    """Exact cases: per attack, the smaller eps' witness replaces the larger one's only where it is better."""
    from rtcore.tables import carry_witnesses

    probe = rtcore.LinearProbe.from_weights(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2))
    f0 = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 1])
    small = {"feature": torch.tensor([[2.0, 1.5], [2.0, 0.1], [0.0, 3.0]]),
             "e2e": torch.tensor([[0.0, 2.5], [2.0, 0.0], [0.0, 3.0]]),
             "ce": torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])}
    large = {"feature": torch.tensor([[2.0, 1.0], [2.0, 0.5], [0.0, 3.0]]),
             "e2e": torch.tensor([[2.0, 0.0], [1.0, 2.0], [0.0, 3.0]]),
             "ce": torch.tensor([[1.5, 0.0], [1.0, 0.5], [0.0, 3.0]])}
    out = carry_witnesses({0.1: large, 0.05: small}, f0, y, probe)
    assert list(out) == [0.1, 0.05], "the caller's order is kept"
    assert torch.equal(out[0.05]["feature"], small["feature"]), "the smallest eps keeps its own"
    assert torch.equal(out[0.1]["feature"], torch.tensor([[2.0, 1.5], [2.0, 0.5], [0.0, 3.0]]))  # row 0 carried
    assert torch.equal(out[0.1]["e2e"], torch.tensor([[0.0, 2.5], [1.0, 2.0], [0.0, 3.0]]))  # flip carried, own flip kept
    assert torch.equal(out[0.1]["ce"], torch.tensor([[1.0, 0.0], [1.0, 0.5], [0.0, 3.0]]))  # larger loss carried
    assert torch.equal(large["feature"], torch.tensor([[2.0, 1.0], [2.0, 0.5], [0.0, 3.0]])), "inputs unchanged"


def test_progress_reports_stages_in_order(linear_case, tmp_path: Path) -> None:
    events: list[rtcore.ProgressEvent] = []
    rtcore.evaluate(linear_case.backbone, [_linear_task(linear_case, "a"), _linear_task(linear_case, "b")], [0.1],
                    n=16, attack="fast", cache_dir=str(tmp_path), progress=events.append)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = {e.stage for e in events}
    assert {"linear probe", "feature attack", "head-subspace attack", "end-to-end attack", "loss attack",
            "done"} <= stages
    units = events[-1].total
    assert units > 2 and events[-1].done == units and events[-1].left == 0.0
    assert [e.done for e in events] == sorted(e.done for e in events) and all(e.total == units for e in events)
    seconds = [e.seconds for e in events]
    assert seconds == sorted(seconds), "elapsed time never goes back"
    first = next(i for i, e in enumerate(events) if e.done >= 1)
    assert all(e.left is None for e in events[:first]), "no time left before a unit was measured: nothing to scale"
    assert all(e.left is not None and e.left >= 0 for e in events[first:]), "then the measured one (TimeLeft)"


def test_the_command_lines_progress_shows_the_events_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    from rtcore.cli.report import Progress, console

    show = Progress()
    with console():
        show(rtcore.ProgressEvent("feature attack", 0.25, "shapes", done=1, total=4, seconds=12.0, left=30.0))
        show(rtcore.ProgressEvent("end-to-end attack", 0.05, "shapes", total=4, seconds=1.0))
    show(rtcore.ProgressEvent("end-to-end attack", 0.5, "shapes", total=4, seconds=2.0))  # no console: nothing
    err = capsys.readouterr().err.splitlines()
    assert err[0] == " 25.0% feature attack [shapes] · unit 2/4 · 12 s spent, about 30 s left"
    assert err[1].endswith("unit 1/4 · 1 s spent, time left measured after the first computed unit")
    assert len(err) == 2, "outside the command line the lines go to the rtcore.cli logger only"


def test_bad_arguments(linear_case) -> None:
    task = _linear_task(linear_case)
    with pytest.raises(ValueError, match="n="):
        rtcore.evaluate(linear_case.backbone, [task], [0.1], n=0)
    with pytest.raises(ValueError, match="tasks is empty"):
        rtcore.evaluate(linear_case.backbone, [], [0.1])
    with pytest.raises(ValueError, match="unknown task|valid"):
        rtcore.evaluate(linear_case.backbone, ["no-such-task"], [0.1])
    with pytest.raises(ValueError, match="norm"):
        rtcore.evaluate(linear_case.backbone, [task], [0.1], norm="l3")


def test_cli_command_roundtrip() -> None:
    cmd = rtcore.cli_command("fmnist-cnn-standard", ["shapes", "glyphs"], [0.03, 0.1], "linf", 200)
    assert cmd.startswith("python -m rtcore evaluate --backbone fmnist-cnn-standard --tasks shapes glyphs")
    from rtcore.cli import build_parser

    from rtcore.runs.fields import namespace_values

    given = namespace_values(build_parser().parse_args(cmd.split()[3:]), rtcore.EvalSpec)
    assert given["tasks"] == ["shapes", "glyphs"] and given["eps"] == ["0.03", "0.1"] and given["n"] == 200
    assert rtcore.EvalSpec.from_dict(given).command(out="results.csv") == cmd


@pytest.mark.skipif(not any(p.suffix == ".json" for p in BUNDLED_DIR.glob("*.json")),
                    reason="no bundled backbone")
def test_small_end_to_end_on_a_bundled_backbone(tmp_path: Path) -> None:
    name = sorted(p.stem for p in BUNDLED_DIR.glob("*.json"))[0]
    df = rtcore.evaluate(name, ["shapes", "fmnist-novel"], [0.0, 0.03], n=24, attack="fast", cache_dir=str(tmp_path))
    assert len(df) == 4
    _check_relations(df)
    assert (df[df.eps == 0]["clean_acc"] > 0.4).all()  # above chance (1/3 for shapes, 1/5 for fmnist-novel)


@pytest.mark.parametrize("probe", ["logistic-std", "robust"])
def test_probe_kinds_and_optional_attacks_keep_every_relation(linear_case, probe: str, tmp_path: Path) -> None:
    task = _linear_task(linear_case)
    for head_attack, loss_attack in ((True, True), (False, False)):
        ev = rtcore.run_evaluation(linear_case.backbone, task, [0.0, 0.05, 0.1], "linf", n=32, attack="fast",
                                   probe=probe, probe_eps=0.05 if probe == "robust" else None,
                                   head_attack=head_attack, loss_attack=loss_attack,
                                   cache_dir=str(tmp_path))
        _check_relations(ev.summary)
        assert set(ev.summary["probe"]) == {probe} and set(ev.samples["probe"]) == {probe}
        assert (ev.summary["probe_radius"] > 0).all() == (probe == "robust")
        assert (ev.summary["head_attack"] == head_attack).all()


def test_a_given_head_is_used_as_is(linear_case, tmp_path: Path) -> None:
    task = _linear_task(linear_case)
    head = rtcore.LinearProbe.from_weights(linear_case.W, linear_case.b)
    ev = rtcore.run_evaluation(linear_case.backbone, task, [0.0, 0.05], "l2", n=64, attack="standard", head=head,
                               cache_dir=str(tmp_path))
    _check_relations(ev.summary)
    assert set(ev.summary["probe"]) == {"given"}
    exact = linear_case.exact_robust(0.05, "l2").double().mean()  # the given head is the exact linear model
    assert float(ev.summary[ev.summary.eps == 0.05]["robust_acc"].iloc[0]) == pytest.approx(float(exact))
    with pytest.raises(ValueError, match="head="):
        rtcore.run_evaluation(linear_case.backbone, task, [0.05], n=8,
                              head=rtcore.LinearProbe.from_weights(linear_case.W[:2], linear_case.b[:2]),
                              cache_dir=str(tmp_path))
