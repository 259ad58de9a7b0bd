"""The evaluation as a value, and how it runs.

* :mod:`.spec`: :class:`EvalSpec`, everything that changes a number, checked once, TOML/JSON, a stable digest;
* :mod:`.plan`: :func:`plan`, specs -> an ordered list of small cached :class:`Unit` of work;
* :mod:`.execute`: :class:`Executor` runs units against the verified cache and builds the tables at any time;
  :func:`execute` runs a whole spec;
* :mod:`.progress`: progress events and the measured-throughput time estimate;
* :mod:`.compare`: the transfer methods compared on one backbone and task;
* :mod:`.sweep`: a zoo spec -> units -> engines (local in-process, or Ray), results per unit on disk.

The CLI, the dashboard, the scripts and the sweeps all build specs and run them here; nothing below
this package knows about them.
"""

from .compare import MethodComparison, Verdict, compare_methods, evaluate_adapted, method_table, ordering_verdict
from .execute import Evaluation, Executor, TaskState, UnitReport, execute
from .plan import STAGES, Unit, plan, test_indices
from .progress import ProgressCallback, ProgressEvent, Throughput, fmt_seconds
from .spec import EvalSpec, load_spec, parse_eps_text
from .sweep import SweepEvent, SweepResult, SweepSpec, SweepUnit, list_sweeps, load_sweep, sweep

__all__ = ["STAGES", "SweepEvent", "SweepResult", "SweepSpec", "SweepUnit", "list_sweeps", "load_sweep", "sweep",
           "EvalSpec", "Evaluation", "Executor", "MethodComparison", "Verdict", "compare_methods",
           "evaluate_adapted", "method_table", "ordering_verdict", "ProgressCallback", "ProgressEvent", "TaskState",
           "Throughput", "Unit", "UnitReport", "execute", "fmt_seconds", "load_spec",
           "parse_eps_text", "plan", "test_indices"]
