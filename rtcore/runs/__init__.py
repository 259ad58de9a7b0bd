"""The evaluation as a value, and how it runs.

* :mod:`.spec`: :class:`EvalSpec`, everything that changes a number, checked once, TOML/JSON, a stable digest;
* :mod:`.plan`: :func:`plan`, specs -> an ordered list of small cached :class:`Unit` of work;
* :mod:`.execute`: :class:`Executor` runs units against the verified cache and builds the tables at any time;
  :func:`execute` runs a whole spec;
* :mod:`.progress`: the progress event and the one time-left estimate (measured seconds per unit of work);
* :mod:`.scheduler`: jobs of steps shared by what they compute, worker threads taking turns on the device;
* :mod:`.jobs`: the evaluation and transfer-comparison jobs a dashboard runs on the scheduler;
* :mod:`.compare`: the transfer methods compared on one backbone and task;
* :mod:`.sweep`: a zoo spec -> units -> engines (local in-process, or Ray), results per unit on disk.
* :mod:`.selection`: a dashboard session's selection: defaults, choices, the eps a user adds, URL queries.

The CLI, the dashboard, the scripts and the sweeps all build specs and run them here; nothing below
this package knows about them.
"""

from .compare import MethodComparison, Verdict, compare_methods, evaluate_adapted, method_table, ordering_verdict
from .evaluate import execute
from .execute import Executor
from .results import Evaluation, TaskState, UnitReport
from .jobs import EvalJob, EvalRequest, Snapshot, Tables, TransferJob, TransferRequest
from .plan import STAGES, Unit, plan, test_indices
from .progress import ProgressCallback, ProgressEvent, TimeLeft, fmt_seconds
from .scheduler import Job, JobState, Scheduler, Step, default_scheduler
from .spec import EvalSpec, load_spec, parse_eps_text
from .sweep import SweepEvent, SweepResult, SweepSpec, SweepUnit, list_sweeps, load_sweep, sweep

__all__ = ["STAGES", "SweepEvent", "SweepResult", "SweepSpec", "SweepUnit", "list_sweeps", "load_sweep", "sweep",
           "EvalSpec", "Evaluation", "Executor", "MethodComparison", "Verdict", "compare_methods",
           "evaluate_adapted", "method_table", "ordering_verdict", "ProgressCallback", "ProgressEvent", "TaskState",
           "TimeLeft", "Unit", "UnitReport", "execute", "fmt_seconds", "load_spec",
           "parse_eps_text", "plan", "test_indices", "EvalJob", "EvalRequest", "Job", "JobState", "Scheduler",
           "Snapshot", "Step", "Tables", "TransferJob", "TransferRequest", "default_scheduler"]
