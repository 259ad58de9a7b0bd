"""The pool every search runs in (rtcore.attacks.pool.Pool): keep-best, early stop, give-up, stages run as if
one after another (later runs started early never change a result), probes batched, moot rows skipped, and a
row's result independent of the rows it shares the pool with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest
import torch
from torch import nn

import rtcore
from rtcore.attacks import AttackSettings, AttackSetup
from rtcore.attacks.pool import Pool
from rtcore.attacks.search import Jobs, Probe, RowPlan, Rows, RowView, Run, Stage
from rtcore.models import BUNDLED_DIR


@dataclass
class Toy:
    """A searcher whose objective is ``gain[target] * sum(x' - x) - offset[row]``: ascending moves every
    pixel up; a row breaks once it has moved ``offset / gain`` in total (4 pixels, eps 0.1: at most 0.4)."""

    plans: Callable[[RowView], RowPlan]
    offset: torch.Tensor
    stops: bool = True
    cfg: AttackSettings = AttackSettings(steps=10, batch_size=64)
    norm: str = "linf"
    seed: int = 0
    search: nn.Module = field(default_factory=lambda: rtcore.as_backbone(nn.Flatten()))
    losses: tuple[str, ...] = ("up",)
    calls: list[list[int]] = field(default_factory=list)

    def plan(self, row: RowView) -> RowPlan:
        return self.plans(row)

    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(jobs.row.tolist())
        gain = torch.tensor([1.0, 2.0, 4.0])[jobs.target.clamp_min(0)]
        s = gain * (xa - rows.x[jobs.row]).flatten(1).sum(1)
        return s, (s - self.offset[jobs.row]).detach()


def _rows(n: int) -> Rows:
    x = torch.full((n, 1, 2, 2), 0.5)
    return Rows(x=x, eps=torch.full((n,), 0.1), sample=torch.arange(n), y=None, clean=torch.zeros(n, 1),
                eps_index=torch.zeros(n, dtype=torch.long))


def _search(toy: Toy, n: int, later: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor, Pool]:
    rows = _rows(n)
    best_x, best = rows.x.clone(), -toy.offset.clone()
    pool = Pool(toy, rows, best_x, best, later)
    pool.run()
    return best_x, best, pool


@pytest.mark.parametrize("rule", ["cosine", "apgd"])
def test_keep_best_and_a_row_stops_once_it_breaks(rule: str) -> None:
    toy = Toy(lambda row: iter([Run("up", noise=1, rule=rule, steps=10)]), offset=torch.tensor([-1.0, 0.2, 10.0]))
    best_x, best, _ = _search(toy, 3)
    seen = [r for call in toy.calls for r in call]
    assert seen.count(0) == 1, "row 0 is broken at its start: scored once, never stepped"
    assert 1 < seen.count(1) < 11, "row 1 stops once broken"
    assert seen.count(2) == 11, "row 2 never breaks: every iterate of 10 steps, the start and the last one"
    assert float(best[2]) == pytest.approx(0.4 - 10.0, abs=1e-5), "keep-best: its best iterate, at the ball's corner"
    assert float((best_x - 0.5).abs().max()) <= 0.1 + 1e-7 and bool(best[1] > 0)


def test_a_run_gives_up_where_it_makes_no_progress() -> None:
    plan = lambda row: iter([Run("up", noise=1, steps=10, give_up=((3, -5.0),))])  # noqa: E731
    toy = Toy(plan, offset=torch.tensor([10.0, 4.9]))
    _search(toy, 2)
    seen = [r for call in toy.calls for r in call]
    assert seen.count(0) == 4, "row 0 is still below -5 after 3 steps: its run ends there"
    assert seen.count(1) == 11, "row 1 is above -5 by then: it runs on"


def _three_targets(go_on: Callable[[torch.Tensor], bool] | None = None) -> Callable[[RowView], RowPlan]:
    """Targets 0, 1, 2 ascend 1x, 2x, 4x as fast: sequentially, target 0 runs first."""
    runs = tuple(Run("up", noise=10 + t, steps=12, target=t) for t in range(3))
    return lambda row: iter([Stage(runs, go_on=go_on)])


def _one_after_another(go_on: Callable[[torch.Tensor], bool] | None = None) -> Callable[[RowView], RowPlan]:
    def plan(row: RowView) -> Iterator[Run]:
        for t in range(3):
            yield Run("up", noise=10 + t, steps=12, target=t)
            if go_on is not None and not go_on(row.best):
                return
    return plan


@pytest.fixture
def no_smaller_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search model with no exact smaller chunk: the last chunk of a step is padded, so later runs of a stage
    start early in its free room (with an exact smaller chunk the step computes the rest in that instead)."""
    monkeypatch.setattr("rtcore.attacks.pool.exact_chunks", lambda model, x, key=None: ())


@pytest.mark.parametrize("offset", [0.3, 0.9, 5.0])  # target 0 breaks; only 2 and 4 do; none does
def test_a_stage_gives_the_result_of_its_runs_one_after_another(offset: float, no_smaller_chunk: None) -> None:
    """The later runs start early (the pool has room) and may break first; the first in order counts."""
    off = torch.full((2,), offset)
    staged, seq = Toy(_three_targets(), off), Toy(_one_after_another(), off)
    a = _search(staged, 2)
    b = _search(seq, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert max(len(c) for c in staged.calls) > max(len(c) for c in seq.calls), "later runs started early"
    if offset > 0.4:  # target 0 cannot break it: one after another, the stage takes three runs' passes
        assert len(staged.calls) < len(seq.calls) / 2


def test_a_stage_stops_where_go_on_says_so_even_if_a_later_run_broke_early(no_smaller_chunk: None) -> None:
    go_on = lambda best: bool(best > 100.0)  # noqa: E731 - never: only the first run counts
    off = torch.full((1,), 0.9)  # target 0 (gain 1, at most 0.4) cannot break it; targets 1 and 2 can
    staged = Toy(_three_targets(go_on), off)
    best_x, best, _ = _search(staged, 1)
    assert float(best[0]) <= 0, "the early runs that broke it never count"
    b = _search(Toy(_one_after_another(go_on), off), 1)
    assert torch.equal(best_x, b[0]) and torch.equal(best, b[1])


@pytest.mark.parametrize("offset", [0.3, 0.9])
def test_with_exact_smaller_chunks_a_step_computes_the_rest_in_them(offset: float) -> None:
    """A model exact at smaller chunks (the toy's): no early starts, the last piece of a step in chunks of
    16, 8 or 4 rows, and every result the same as one run after another."""
    off = torch.full((37,), offset)
    staged = Toy(_three_targets(), off)
    a = _search(staged, 37)
    assert a[2].tails == (16, 8, 4) and not a[2].early
    assert a[2]._pieces(37) == [(0, 32), (32, 8)] and a[2]._pieces(31) == [(0, 32)]
    assert a[2]._pieces(45) == [(0, 32), (32, 16)] and a[2]._pieces(3) == [(0, 4)]
    assert a[2]._pieces(20) == [(0, 16), (16, 4)] and a[2]._pieces(64) == [(0, 32), (32, 32)]
    b = _search(Toy(_one_after_another(), off), 37)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_probes_are_batched_and_answered_per_row() -> None:
    asked: list[int] = []

    def probe(att: object, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        asked.append(x.shape[0])
        return (x - 0.5).flatten(1).sum(1) * 0 + torch.arange(x.shape[0], dtype=torch.float32)

    got: dict[int, float] = {}

    def plan(row: RowView) -> RowPlan:
        value = yield Probe(probe)
        got[row.index] = float(value)
        yield Run("up", noise=1, steps=2)

    _search(Toy(plan, offset=torch.full((5,), 9.0)), 5)
    assert asked == [5] and got == {i: float(i) for i in range(5)}


def test_a_break_makes_the_later_rows_moot() -> None:
    """Rows 0 and 1 are one point at two eps: row 0 breaks, row 1 is skipped (its witness is row 0's)."""
    toy = Toy(lambda row: iter([Run("up", noise=1, steps=10)]), offset=torch.tensor([0.2, 0.2, 9.0]))
    _, best, pool = _search(toy, 3, later=[[1], [], []])
    assert pool.skipped.tolist() == [False, True, False] and bool(best[0] > 0)


@pytest.mark.skipif(not (BUNDLED_DIR / "fmnist-cnn-pgd-linf-0.1.json").is_file(), reason="bundled backbone missing")
def test_a_rows_result_does_not_depend_on_the_rows_it_shares_the_pool_with() -> None:
    """Every row of a 'strong'-like search alone gives the bits it gives among the others."""
    from rtcore.attacks import EndToEndAttack

    g = rtcore.create_backbone("fmnist-cnn-pgd-linf-0.1", device="cpu")
    x = rtcore.load_task("fmnist-novel").x_test[:6]
    torch.manual_seed(0)
    model = rtcore.ProbedModel(g, rtcore.LinearHead(torch.randn(5, 128) * 0.05, torch.zeros(5))).eval()
    y = model(x).argmax(1)
    cfg = replace(rtcore.PRESETS["strong"], e2e_steps=12, screen_steps=6)
    att = EndToEndAttack(model, AttackSetup("linf", cfg, seed=1))
    att.run(x, y, [0.05])  # prepares the attack (search model, classes)
    with torch.no_grad():
        clean = model(x)
    rows = Rows(x=x, eps=torch.full((6,), 0.05), sample=torch.arange(6), y=y, clean=clean,
                eps_index=torch.zeros(6, dtype=torch.long))
    together, _ = att.search_rows(rows)
    for i in range(6):
        alone, _ = att.search_rows(rows.take(torch.tensor([i])))
        assert torch.equal(alone[0], together[i])
