"""The one projected-gradient loop every attack runs: a pool of runs in flight, stepped together.

A search is a set of rows (each an (eps, point) pair) and, per row, a plan (:data:`.search.RowPlan`):
a generator of runs, stages of runs and probes. :class:`Pool` holds the runs of every row that can go
on in one set of slots and steps them all at once, in chunks of exactly
:func:`rtcore.numerics.chunk_rows` rows (the forward and backward pass of one chunk at a time, so the
graph in memory is one chunk's). A row's arithmetic never depends on the other rows of its chunk
(:mod:`rtcore.numerics`), so the pool changes no bit of any result: every run's iterates are those it
would have alone, and every row's result the one of running its plan run after run.

Why a pool: a run stops a point the moment it breaks, and the plans send only some points on to
further runs; run by run, those few would fill chunks padded with zero images (up to 31 of 32 rows
wasted per step). In the pool they share chunks with every other row's runs, whatever run each is
at. The last, partly filled chunk of a step runs in smaller chunks (16, 8 or 4 rows) where the search
model computes every row to the same bits there (:func:`rtcore.numerics.exact_chunks`), so no padding
is computed. For a model without such chunks (the search model holds a :class:`rtcore.Backbone`, which
pads every chunk to its full size), the later runs of a stage (:class:`.search.Stage`) start early in
the room left: they are evicted again (their work dropped) before they would cost a chunk of their
own, and a stage's result is still the one of its runs in order.

Every iterate (the start and the last one included) is scored and the best per run kept; a run of
an attack that stops ends once its score is > 0 (the point breaks). On the CPU ended runs leave the
pool at once; on an accelerator they are frozen in place and leave every :data:`COMPACT_EVERY`
steps, so that the loop does not wait for the device (finding them is a host sync). Both give the
same results. A step rule moves an iterate: the cosine schedule (:func:`.engine.cosine_step`) or APGD's
momentum and step halving (:class:`.apgd.APGDState`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models.wrapper import Backbone
from ..numerics import chunk_rows, exact_chunks, rows_per_chunk
from .engine import cosine_step, step_sizes
from .geometry import bshape
from .search import Ask, Jobs, Probe, ProgressFn, Rows, RowView, Run
from .slots import PoolRow, PoolRun, Searcher, Slots, start_points

__all__ = ["COMPACT_EVERY", "Pool", "Searcher", "Slots"]

#: on an accelerator, ended runs leave the pool every this many steps (one host sync each time)
COMPACT_EVERY = 8


class Pool:
    """One search (module docstring): ``rows`` with their best iterate and score so far (updated in place),
    the attack's plans, objective and settings. ``later[r]``: the rows a break of row ``r`` makes moot
    (the same point at larger eps, whose witness it then is); they end unsearched (see :attr:`skipped`)."""

    def __init__(self, att: Searcher, rows: Rows, best_x: torch.Tensor, best: torch.Tensor,
                 later: Sequence[Sequence[int]] | None = None, progress: ProgressFn | None = None) -> None:
        self.att, self.rows, self.best_x, self.best = att, rows, best_x, best
        self.later = later
        # a row waits for the same point's row at the next smaller eps: if that breaks, this one is moot
        self.waits_on = {q[0]: r for r, q in enumerate(later or []) if q}
        self.progress, self.reported = progress, 0.0
        dev = rows.x.device
        self.chunk = chunk_rows(dev)
        self.autocast = att.cfg.autocast_dtype  # the search's arithmetic (None: float32)
        self.compact_every = 1 if dev.type == "cpu" else COMPACT_EVERY
        self.capacity = max(att.cfg.batch_size, 1)
        # the last chunk of a step in a smaller chunk where the model computes its rows to the same bits there
        backbone = next((m for m in att.search.modules() if isinstance(m, Backbone)), None)
        exact = backbone is not None and self.autocast is None
        self.tails = exact_chunks(att.search, rows.x, key=backbone) if exact else ()
        # else later runs of a stage start early where the room is free: a backbone pads every chunk anyway
        self.early = att.stops and backbone is not None and not self.tails
        self.skipped = torch.zeros(len(rows), dtype=torch.bool, device=dev)
        self.slots: Slots | None = None
        self.owner: list[tuple[int, int]] = []  # per slot: (row, position in its stage)
        self.loss_code = {name: i for i, name in enumerate(att.losses)}
        self.rows_state = [PoolRow(plan=att.plan(RowView(rows, best, i))) for i in range(len(rows))]
        for i in range(len(rows)):
            self._advance(i, None)

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Step until every row's plan is done."""
        it = 0
        while True:
            if it % self.compact_every == 0:
                self._compact()
                self._answer_probes()
                self._admit()
                self._report()
            if self.slots is None or len(self.slots) == 0:
                if not any(r.probe is not None for r in self.rows_state):
                    break
                continue
            self._step()
            it += 1
        self._report(final=True)

    def _step(self) -> None:
        """Score every slot's iterate, keep each run's best, end the runs that broke, gave up or took their
        last step, and step the others (the backward pass only for those)."""
        sl = self.slots
        assert sl is not None
        loss, grad = torch.empty_like(sl.best), torch.zeros_like(sl.x)
        move = torch.zeros_like(sl.ended)
        accelerator = sl.x.device.type != "cpu"
        for lo, size in self._pieces(len(sl)):
            part = slice(lo, lo + size)
            live = ~sl.ended[part]
            with_grad = accelerator or bool((live & (sl.t[part] < sl.steps[part])).any())
            xa = sl.x[part].detach().requires_grad_(with_grad)
            with torch.set_grad_enabled(with_grad), torch.autocast(xa.device.type, dtype=self.autocast,
                                                                    enabled=self.autocast is not None), \
                    rows_per_chunk(size if size < self.chunk else None):
                lp, score = self.att.objective(xa, self.rows, sl.jobs[part])
            with torch.no_grad():
                score = score.detach()
                better = live & (score > sl.best[part])
                sl.best[part] = torch.where(better, score, sl.best[part])
                sl.best_x[part] = torch.where(bshape(better, xa), xa.detach(), sl.best_x[part])
                broke = live & (score > 0) if self.att.stops else torch.zeros_like(live)
                checks = (sl.t[part, None] == sl.patience[part]) & (sl.best[part, None] < sl.floor[part])
                quit = live & ~broke & checks.any(dim=1)
                steps = live & ~broke & ~quit & (sl.t[part] < sl.steps[part])
                sl.broke[part] |= broke
                sl.ended[part] |= live & ~steps
            move[part] = steps
            if with_grad and (accelerator or bool(steps.any())):
                (grad[part],) = torch.autograd.grad((lp * steps).sum() if accelerator else lp[steps].sum(), xa)
            loss[part] = lp.detach()
        a = torch.nonzero(move).flatten()
        if a.numel():
            with torch.no_grad():
                self._move(a, grad[a], loss[a])

    def _pieces(self, n: int) -> list[tuple[int, int]]:
        """(start, chunk size) of the pieces a step computes ``n`` slots in: full chunks, then the rest in the
        exact smaller chunks (:attr:`tails`): the largest that it fills, then the smallest that holds what is
        left, where they hold it in fewer rows than a full chunk."""
        full = n - n % self.chunk
        pieces = [(lo, self.chunk) for lo in range(0, full, self.chunk)]
        if full == n:
            return pieces
        rest, lo = [], full
        while lo < n and self.tails:
            holds = [t for t in self.tails if t >= n - lo]
            size = min(holds) if holds else max(t for t in self.tails if t <= n - lo)
            rest.append((lo, size))
            lo += size
        if not rest or sum(size for _, size in rest) >= self.chunk:
            rest = [(full, self.chunk)]
        return pieces + rest

    def _move(self, a: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor) -> None:
        """One step of the slots ``a`` by their rules."""
        sl = self.slots
        assert sl is not None
        xd, t, steps, x0, eps = sl.x[a], sl.t[a], sl.steps[a], sl.x0[a], sl.eps[a]
        new = torch.empty_like(xd)
        apgd = sl.apgd[a]
        for i in (torch.nonzero(apgd).flatten(), torch.nonzero(~apgd).flatten()):
            if not i.numel():
                continue
            if bool(apgd[i[0]]):
                new[i] = sl.state.step(a[i], t[i], steps[i], xd[i], grad[i], loss[i], x0[i], eps[i], self.att.norm)
            else:
                new[i] = cosine_step(xd[i], grad[i], self._cosine_sizes(t[i], steps[i]), x0[i], eps[i], self.att.norm)
        sl.x[a] = new
        sl.t[a] = t + 1

    def _cosine_sizes(self, t: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        size = torch.empty(t.shape, device=t.device)
        for s in steps.unique().tolist():
            on = steps == s
            table = torch.tensor(step_sizes(int(s), self.att.cfg.step_max), dtype=torch.float32, device=t.device)
            size[on] = table[t[on]]
        return size

    # ------------------------------------------------------------ runs ending and starting

    def _compact(self) -> None:
        """Ended runs leave; their rows' stages resolve (and their plans go on)."""
        sl = self.slots
        if sl is None or not bool(sl.ended.any()):
            return
        ended = torch.nonzero(sl.ended).flatten().tolist()
        touched = set()
        for s in ended:
            r, k = self.owner[s]
            rec = self.rows_state[r].stage[k]
            rec.state, rec.broke = "done", bool(sl.broke[s])
            rec.best, rec.best_x = sl.best[s], sl.best_x[s]
            touched.add(r)
        self._drop(sl.ended)
        for r in sorted(touched):
            self._resolve(r)

    def _drop(self, mask: torch.Tensor) -> None:
        """Remove the slots of ``mask``."""
        assert self.slots is not None
        keep = ~mask
        self.owner = [o for o, k in zip(self.owner, keep.tolist()) if k]
        self.slots = self.slots.take(torch.nonzero(keep).flatten())

    def _resolve(self, r: int) -> None:
        """Row ``r``'s stage, if it has come to an end: its runs' bests folded in order into the row's
        (as if they had run one after another), then its plan goes on, or ends if the point broke."""
        row = self.rows_state[r]
        if row.finished:
            return
        stage = row.stage
        broke = next((k for k, q in enumerate(stage) if q.state == "done" and q.broke), None)
        if broke is not None:  # the runs after the first that broke would never have run
            self._cancel(r, list(range(broke + 1, len(stage))))
        while row.folded < len(stage) and stage[row.folded].state == "done":
            rec = stage[row.folded]
            assert rec.best is not None and rec.best_x is not None
            if bool(rec.best > self.best[r]):
                self.best[r], self.best_x[r] = rec.best, rec.best_x
            row.folded += 1
            stop = rec.broke or (row.go_on is not None and row.folded < len(stage) and not row.go_on(self.best[r]))
            if stop:  # the later runs would never have run
                self._cancel(r, list(range(row.folded, len(stage))))
                break
        if any(q.state in ("pending", "active") for q in stage):
            return
        row.done = row.stage_done
        row.stage, row.folded, row.go_on = [], 0, None
        if self.att.stops and bool(self.best[r] > 0):
            self._finish(r, broken=True)
        else:
            self._advance(r, None)

    def _cancel(self, r: int, positions: list[int]) -> None:
        """Drop the runs at ``positions`` of row ``r``'s stage (pending or in a slot): they will never count."""
        row = self.rows_state[r]
        drop = [s for s, (rr, k) in enumerate(self.owner) if rr == r and k in positions]
        if drop and self.slots is not None:
            mask = torch.zeros(len(self.slots), dtype=torch.bool, device=self.slots.x.device)
            mask[drop] = True
            self._drop(mask)
        for k in positions:
            row.stage[k].state = "cancelled"

    def _advance(self, r: int, value: torch.Tensor | None) -> None:
        """Ask row ``r``'s plan for what comes next (sending a probe's value)."""
        row = self.rows_state[r]
        try:
            ask: Ask = row.plan.send(value) if value is not None else next(row.plan)
        except StopIteration:
            self._finish(r, broken=False)
            return
        if isinstance(ask, Probe):
            row.probe = ask
            return
        runs = (ask,) if isinstance(ask, Run) else ask.runs
        if not runs:
            self._advance(r, None)
            return
        row.stage = [PoolRun(run) for run in runs]
        row.go_on = None if isinstance(ask, Run) else ask.go_on
        row.stage_done = runs[-1].done
        row.stage_steps = sum(self._steps(run) for run in runs)

    def _finish(self, r: int, broken: bool) -> None:
        """Row ``r`` is done; if its point broke, the rows it makes moot end unsearched."""
        row = self.rows_state[r]
        row.finished, row.done, row.stage, row.probe, row.folded = True, 1.0, [], None, 0
        close = getattr(row.plan, "close", None)  # a generator's: its pending code never runs
        if close is not None:
            close()
        if broken and self.later is not None:
            for q in self.later[r]:
                other = self.rows_state[q]
                if not other.finished:
                    self._cancel(q, list(range(len(other.stage))))
                    self.skipped[q] = True
                    self._finish(q, broken=False)

    def _answer_probes(self) -> None:
        """Every row waiting for a probe gets its value (one batched call per probe function)."""
        waiting = [i for i, row in enumerate(self.rows_state) if row.probe is not None]
        while waiting:
            fn = self.rows_state[waiting[0]].probe.fn  # type: ignore[union-attr]
            group = [i for i in waiting if self.rows_state[i].probe.fn == fn]  # type: ignore[union-attr]
            idx = torch.tensor(group, device=self.rows.x.device)
            values = fn(self.att, self.best_x[idx], None if self.rows.y is None else self.rows.y[idx])
            for j, i in enumerate(group):
                self.rows_state[i].probe = None
                self._advance(i, values[j])
            waiting = [i for i, row in enumerate(self.rows_state) if row.probe is not None]

    def _steps(self, run: Run) -> int:
        return run.steps or self.att.cfg.steps

    def _admit(self) -> None:
        """Start the runs that must run next (the first unfinished run of each stage; every run of a stage
        for attacks that do not stop), up to :attr:`capacity` slots; then, for attacks that stop, later runs
        of stages in the room left in the last chunk; evict such early runs that would cost a chunk."""
        n = 0 if self.slots is None else len(self.slots)
        must: list[tuple[int, int]] = []
        early: list[tuple[int, int]] = []
        for r, row in enumerate(self.rows_state):
            first = True
            for k, rec in enumerate(row.stage):
                if rec.state in ("done", "cancelled"):
                    continue
                if rec.state == "pending":
                    if (first and not self._waiting(r)) or not self.att.stops:
                        must.append((r, k))
                    elif self.early:
                        early.append((r, k))
                first = False
        room = self.capacity - n
        start = must[:max(room, 0)]
        mandatory = self._mandatory() + len(start)
        cap = min(self.capacity, -(-mandatory // self.chunk) * self.chunk)
        spare = cap - n - len(start)
        if spare < 0:
            self._evict(-spare)
            spare = 0
        start += early[:spare]
        if start:
            self._start(start)

    def _waiting(self, r: int) -> bool:
        """Whether row ``r`` waits for the same point's row at a smaller eps to end unbroken."""
        q = self.waits_on.get(r)
        return q is not None and not self.rows_state[q].finished

    def _needed(self, r: int, k: int) -> bool:
        """Whether run ``k`` of row ``r``'s stage must run now (not just early)."""
        stage = self.rows_state[r].stage
        return not self.att.stops or (not self._waiting(r) and all(q.state in ("done", "cancelled") for q in stage[:k]))

    def _mandatory(self) -> int:
        """How many slots hold a run that must run now."""
        return sum(self._needed(r, k) for r, k in self.owner)

    def _evict(self, n: int) -> None:
        """Drop ``n`` early (not yet needed) runs, those with the fewest steps taken first; they start again later."""
        sl = self.slots
        assert sl is not None
        cands = [s for s, (r, k) in enumerate(self.owner) if not self._needed(r, k)]
        cands.sort(key=lambda s: int(sl.t[s]))
        drop = cands[:n]
        if not drop:
            return
        for s in drop:
            r, k = self.owner[s]
            self.rows_state[r].stage[k].state = "pending"
        mask = torch.zeros(len(sl), dtype=torch.bool, device=sl.x.device)
        mask[drop] = True
        self._drop(mask)

    def _start(self, which: list[tuple[int, int]]) -> None:
        """Start the given runs (row, position): their starts (seeded per row), fresh rule states, new slots."""
        dev = self.rows.x.device
        runs = [self.rows_state[r].stage[k].run for r, k in which]
        row = torch.tensor([r for r, _ in which], device=dev)
        jobs = Jobs(row=row, loss=torch.tensor([self.loss_code[u.loss] for u in runs], device=dev),
                    target=torch.tensor([-1 if u.target is None else int(u.target) for u in runs], device=dev))
        x0, eps, sample = self.rows.x[row], self.rows.eps[row], self.rows.sample[row]
        x = torch.empty_like(x0)
        for key in sorted({(u.noise, u.start) for u in runs}):
            g = torch.tensor([i for i, u in enumerate(runs) if (u.noise, u.start) == key], device=dev)
            x[g] = start_points(self.att, self.rows, key[1], key[0], x0[g], eps[g], sample[g], jobs[g],
                                self.chunk)
        new = Slots.fresh(runs, jobs, x0, eps, x, [self._steps(u) for u in runs])
        self.slots = new if self.slots is None else self.slots.cat(new)
        self.owner += list(which)
        for r, k in which:
            self.rows_state[r].stage[k].state = "active"

    def _report(self, final: bool = False) -> None:
        """The fraction of the rows' plans done (runs in flight count by their steps)."""
        if self.progress is None or not self.rows_state:
            return
        if final:
            self.progress(1.0)
            return
        steps_in = [0] * len(self.rows_state)
        if self.slots is not None:
            for (r, _), t in zip(self.owner, self.slots.t.tolist()):
                steps_in[r] += t
        total = 0.0
        for r, row in enumerate(self.rows_state):
            if row.finished:
                total += 1.0
                continue
            done_steps = steps_in[r] + sum(self._steps(q.run) for q in row.stage if q.state == "done")
            frac = done_steps / row.stage_steps if row.stage_steps else 0.0
            total += row.done + (row.stage_done - row.done) * min(frac, 1.0)
        f = total / len(self.rows_state)
        if f >= self.reported + 0.01:
            self.reported = f
            self.progress(f)
