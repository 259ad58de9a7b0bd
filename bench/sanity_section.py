"""The sanity section of bench/attacks.py: rtcore.sanity's flags for rtcore's own runs on the
benchmark model (the 'same work' sweep and the 'standard' preset), so that a fast number that
comes from a weak or masked attack shows up in the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import log
from sections import Context

import rtcore
from rtcore.sanity import sanity_checks


@dataclass
class SanityRun:
    """One evaluated run: its settings, eps and the flags (as plain dicts: name, status, values, ...)."""

    run: str
    settings: dict[str, object]
    eps: list[float]
    flags: list[dict[str, object]] = field(default_factory=list)

    @property
    def summary(self) -> str:
        failed = [str(f["name"]) for f in self.flags if f["status"] == "failed"]
        return ",".join(failed) if failed else "ok"


def section_sanity(ctx: Context, n_subset: int = 128) -> list[SanityRun]:
    model, x, y = ctx.model, ctx.x, ctx.y
    runs = [("rtcore sweep (one call), 'same work'", ctx.same, list(ctx.sweep_eps)),
            ("rtcore ('standard' preset)", rtcore.create_strength("standard"), [ctx.eps])]
    out = []
    for name, cfg, eps in runs:
        res = rtcore.attack(model, x, y, eps, settings=cfg)
        flags = sanity_checks(model, x, y, eps, "linf", {e: res.robust[i] for i, e in enumerate(eps)}, cfg,
                              seed=0, n_subset=min(n_subset, x.shape[0]), square_queries=200 if ctx.quick else 1000)
        run = SanityRun(run=name, settings=cfg.key(), eps=eps,
                        flags=[{"name": f.name, "status": f.status, "values": f.values, "threshold": f.threshold,
                                "meaning": f.meaning} for f in flags])
        log(f"  sanity of {name}: {run.summary}")
        out.append(run)
    return out
