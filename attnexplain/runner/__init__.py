"""Plans, units, run directories and executors: ``run_plan("experiments/quick.yaml")``."""

from attnexplain.runner.executors import Executor, LocalExecutor
from attnexplain.runner.plan import Plan, load_plan, parse_plan
from attnexplain.runner.run import RunResult, run_plan
from attnexplain.runner.status import plan_status
from attnexplain.runner.units import ExperimentUnit, TrainingUnit, Unit, expand

__all__ = [
    "Executor",
    "ExperimentUnit",
    "LocalExecutor",
    "Plan",
    "RunResult",
    "TrainingUnit",
    "Unit",
    "expand",
    "load_plan",
    "parse_plan",
    "plan_status",
    "run_plan",
]
