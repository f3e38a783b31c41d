"""Scenarios as data: a YAML file a user can copy (`pykubemark scenario show density`)
and change, checked before anything is created, with errors that name the field and its
line. The built-in scenarios are files of the same format under `load/scenarios/`.

Numbers may be expressions over the cluster's size and the parameters (``nodes``,
``namespaces``, ``pods_per_node``...), evaluated by jinja2's sandbox, so one file serves
20 nodes and 2000: ``replicas: "nodes * pods_per_node // namespaces"``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from pykubemark.contract import POD_FAILURES, NodeFailure, Num
from pykubemark.errors import UserError, one_line
from pykubemark.measure import registry

#: What any wait on pods allows per pod it waits for, beside its fixed part: a phase's
#: default timeout, and `run`'s cleanup (a 2000-node machine deletes ~25 pods/s).
SECONDS_PER_POD = 0.2

KINDS = ("Deployment", "Job", "DaemonSet", "Pod", "Service", "ConfigMap", "Secret")
#: Measurements that can be scoped to a phase; the others span the whole run (both from
#: `measure.registry`, where every measurement is).
PHASE_MEASUREMENTS = registry.names(registry.PHASE)
RUN_MEASUREMENTS = registry.names(registry.RUN)
#: Beyond these a scenario is a mistake, refused before anything is planned: Kubernetes'
#: own scalability limits are 10 000 namespaces and 150 000 pods.
MAX_NAMESPACES = 100_000
MAX_OBJECTS = 1_000_000


class ObjectSpec(msgspec.Struct, forbid_unknown_fields=True):
    """``count`` objects per namespace named ``<name>-<i>``; workloads carry pods."""

    kind: Literal["Deployment", "Job", "DaemonSet", "Pod", "Service", "ConfigMap", "Secret"]
    name: str
    count: Num = 1
    #: Deployment replicas; Job completions (and parallelism).
    replicas: Num = 1
    #: Pods of one group are measured apart (PodStartupLatency per group).
    group: str = "default"
    #: A ConfigMap and a Secret per object, mounted by its pods.
    config: bool = False
    #: Fraction of these objects that get a Service selecting their pods.
    service: Num = 0
    #: Job pods run this long (seconds) before they succeed.
    run_seconds: Num | None = None
    #: Only in the first N namespaces (default: all).
    namespaces: Num | None = None
    #: Fraction of these Deployments that get a HorizontalPodAutoscaler (CPU, target
    #: ``hpa_target`` % of the request, replicas..2x replicas); their pods request
    #: 100m CPU, and a scale phase leaves their replicas to the HPA. Hollow pods report
    #: the usage their profile says (hollow/profile.py `usage`); without metrics-server
    #: the HPA only reports it has no metrics.
    hpa: Num = 0
    hpa_target: Num = 80


class ScaleSpec(msgspec.Struct, forbid_unknown_fields=True):
    """Set every matching Deployment's replicas to ``round(replicas * factor)``;
    ``factor`` is evaluated per object, so ``uniform(0.5, 1.5)`` differs each time."""

    name: str = ""
    factor: Num = 1


class DeleteSpec(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["Deployment", "Job", "DaemonSet", "Pod", "Service", "ConfigMap", "Secret"]
    name: str = ""


#: A scenario's node failure: `pykubemark.contract.NodeFailure`, the type `pykubemark chaos`
#: and the fleet use, with numbers that may be expressions (evaluated per run by
#: `NodeFailure.evaluate`). Its times are from the start of its phase (of the run, for the
#: scenario's own); a duration of 0 lasts until the run ends. (The name is runner.py's.)
NodeFailureSpec = NodeFailure[Num]


class Phase(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    #: Measurements running during this phase only (SchedulingThroughput).
    measurements: list[str] = []
    create: list[ObjectSpec] = []
    scale: list[ScaleSpec] = []
    delete: list[DeleteSpec] = []
    #: Delete every namespace of the run (and so everything in it).
    delete_all: bool = False
    #: Pods created, changed or deleted per second (default: parameter ``qps``).
    qps: Num | None = None
    #: After the phase's actions: until pods are Running / Jobs complete / gone.
    wait: Literal["running", "complete", "gone", "none"] = "running"
    timeout: Num = f"600 + pods * {SECONDS_PER_POD}"
    #: Seconds to stay after the wait (failures keep churning, measurements run).
    hold: Num = 0
    #: Hollow nodes failing from this phase's start on (times relative to it).
    node_failures: list[NodeFailure[Num]] = []


class FailureSpec(msgspec.Struct, forbid_unknown_fields=True):
    """Pods of the matching create entries fail on hollow nodes: ``weight`` of them
    (chosen per pod by the node), as ``failure`` says. Written as annotations on the pod
    templates, which is all that `load` and the hollow nodes share."""

    failure: str
    weight: Num = 1
    #: Only entries of these groups / with these names (default: every pod entry).
    groups: list[str] = []
    names: list[str] = []
    exit_code: int | None = None
    run_seconds: Num | None = None
    start_delay: Num | None = None
    flap_period: Num | None = None

    def __post_init__(self) -> None:
        if self.failure not in POD_FAILURES:
            raise ValueError(f"failure must be one of {', '.join(POD_FAILURES)}, "
                             f"not '{self.failure}'")

    def matches(self, spec: ObjectSpec) -> bool:
        return ((not self.groups or spec.group in self.groups)
                and (not self.names or spec.name in self.names))


class PrometheusAlertSpec(msgspec.Struct, forbid_unknown_fields=True):
    """kube-burner's alert: a PromQL expression evaluated over the run (every ``step``
    seconds); it fires when it returns any series. An alert of severity error that fired
    fails the run; a warning is reported only."""

    expr: str
    description: str = ""
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(f"prometheus_alerts: severity must be error or warning, "
                             f"not '{self.severity}'")
        if not self.expr.strip():
            raise ValueError("prometheus_alerts: expr is empty")


class Scenario(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    phases: list[Phase]
    description: str = ""
    #: Defaults; the command line's --pods-per-node, --qps and --set override them.
    parameters: dict[str, bool | int | float | str] = {}
    namespaces: Num = "max(1, nodes // 100)"
    #: Whole-run measurements.
    measurements: list[str] = msgspec.field(default_factory=lambda: list(RUN_MEASUREMENTS))
    #: The pod-startup SLO (p99, seconds) for every group.
    pod_startup_slo: float = 5.0
    image: str = "registry.k8s.io/pause:3.2"
    #: Pod failures on hollow nodes; the first that matches an entry applies.
    failures: list[FailureSpec] = []
    #: Hollow nodes failing from the run's start on (times relative to it).
    node_failures: list[NodeFailure[Num]] = []
    #: PromQL assertions over the run (`run --prometheus`, or the local cluster's
    #: `up --prometheus`): measure/promql.py.
    prometheus_alerts: list[PrometheusAlertSpec] = []

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a scenario needs at least one phase")
        for measurement in self.measurements:
            if measurement not in RUN_MEASUREMENTS:
                raise ValueError(f"unknown measurement '{measurement}' (known: "
                                 f"{', '.join(RUN_MEASUREMENTS)})")
        for phase in self.phases:
            for measurement in phase.measurements:
                if measurement not in PHASE_MEASUREMENTS:
                    raise ValueError(f"phase '{phase.name}': measurement '{measurement}' cannot "
                                     f"be scoped to a phase (known: "
                                     f"{', '.join(PHASE_MEASUREMENTS)})")

    def groups(self) -> list[str]:
        """Pod groups in order of first creation: each gets its own pod-startup figures."""
        seen: list[str] = []
        for phase in self.phases:
            for spec in phase.create:
                if spec.kind in POD_KINDS and spec.group not in seen:
                    seen.append(spec.group)
        return seen

    def has_node_failures(self) -> bool:
        return bool(self.node_failures) or any(p.node_failures for p in self.phases)


POD_KINDS = ("Deployment", "Job", "DaemonSet", "Pod")


# -- loading -----------------------------------------------------------------------------
def builtin_names() -> list[str]:
    folder = resources.files("pykubemark.load") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def scenario_text(name_or_path: str) -> tuple[str, str]:
    """(text, where) of a built-in scenario by name, or of a file."""
    if name_or_path in builtin_names():
        folder = resources.files("pykubemark.load") / "scenarios"
        return (folder / f"{name_or_path}.yaml").read_text(), f"built-in scenario {name_or_path}"
    path = Path(name_or_path)
    if not path.exists():
        raise UserError(f"no scenario '{one_line(name_or_path)}': not a file, and the "
                        f"built-ins are {', '.join(builtin_names())}")
    try:
        return path.read_text(), f"scenario {one_line(str(path))}"
    except OSError as exc:
        raise UserError(f"scenario {one_line(str(path))} cannot be read: "
                        f"{exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"scenario {one_line(str(path))} is not UTF-8 text (byte "
                        f"{exc.start})") from None


def load_scenario(name_or_path: str) -> Scenario:
    text, where = scenario_text(name_or_path)
    return parse_scenario(text, where)


def parse_scenario(text: str, where: str) -> Scenario:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}{line}: not valid YAML: {one_line(problem)}") from None
    except RecursionError:
        raise UserError(f"{where}: not valid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with name and phases at the top")
    try:
        return msgspec.convert(data, Scenario)
    except RecursionError:  # an alias that contains itself (&a [*a])
        raise UserError(f"{where}: a value contains itself (a YAML alias in its own "
                        "anchor)") from None
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else ""
        reason = message.split(" - at `")[0]
        line = _line_of(node, path)
        field = path.removeprefix("$.") or "scenario"
        at = f" line {line}" if line else ""
        raise UserError(f"{where}{at}: field '{one_line(field)}': {one_line(reason)}") from None


def _line_of(node: yaml.Node | None, path: str) -> int | None:
    """The line of ``$.phases[0].create[1].count`` in the composed YAML."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.removeprefix("$")):
        if key and isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                # A missing or unknown field: the mapping that lacks it (or holds it).
                return line
            node = match
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            return line
        line = node.start_mark.line + 1
    return line


# -- evaluation --------------------------------------------------------------------------
#: Exponents and sequence repetitions beyond these would take the machine's memory or
#: time (``9 ** 9 ** 9``, ``'x' * 10 ** 10``): refused as the user's mistake.
MAX_EXPONENT = 4096
MAX_REPEAT = 1_000_000
#: Filters that compute numbers; jinja2's others build text (``center``, ``indent``...).
FILTERS = ("abs", "default", "float", "int", "length", "max", "min", "round", "sum")


class _Sandbox(SandboxedEnvironment):
    """jinja2's sandbox with nothing but arithmetic: no globals of its own (``range``,
    ``lipsum``...), numeric filters only, and powers and repetitions bounded."""

    intercepted_binops = frozenset(("**", "*"))

    def __init__(self) -> None:
        super().__init__()
        self.globals.clear()
        self.filters = {name: self.filters[name] for name in FILTERS}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT \
                    and isinstance(left, int | float) and abs(left) > 1:
                raise ValueError(f"exponent {right} too large")
            return left ** right
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(times, int) \
                    and len(sequence) * times > MAX_REPEAT:
                raise ValueError(f"a sequence of {len(sequence) * times} items")
        return left * right


_env = _Sandbox()
FUNCTIONS: dict[str, Any] = {
    "min": min, "max": max, "int": int, "round": round, "ceil": math.ceil,
    "floor": math.floor, "uniform": random.uniform, "randint": random.randint,
}


@dataclass
class Values:
    """The names an expression can use: nodes, namespaces, parameters, functions."""

    names: dict[str, Any]
    where: str = "scenario"

    def number(self, value: Num | None, field: str, **extra: Any) -> float:
        if value is None:
            raise UserError(f"{self.where}: field '{field}' has no value")
        if isinstance(value, bool):
            raise UserError(f"{self.where}: field '{field}': expected a number, got {value}")
        result = value if isinstance(value, int | float) \
            else self._eval(value.removeprefix("="), field, extra)
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise UserError(f"{self.where}: field '{field}': '{one_line(str(value))}' gives "
                            f"{one_line(repr(result)[:80])}, not a number")
        if not math.isfinite(result):
            raise UserError(f"{self.where}: field '{field}': '{one_line(str(value))}' gives "
                            f"{result}, not a finite number")
        return result

    def integer(self, value: Num | None, field: str, **extra: Any) -> int:
        return math.floor(self.number(value, field, **extra) + 1e-9)

    def _eval(self, expression: str, field: str, extra: dict[str, Any]) -> Any:
        try:
            compiled = _env.compile_expression(expression, undefined_to_none=False)
            return compiled(**FUNCTIONS, **self.names, **extra)
        except (TemplateError, ArithmeticError, LookupError, AttributeError, NameError,
                RecursionError, TypeError, ValueError) as exc:
            # the user's expression, whatever it raises (jinja2 folds 1e309 into a
            # constant `inf` that its generated code then cannot name: NameError)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{self.where}: field '{field}': cannot evaluate "
                            f"'{one_line(expression)}': {one_line(first)}") from None


def resolve_parameters(scenario: Scenario, nodes: int, overrides: dict[str, Any],
                       where: str) -> Values:
    """Parameters in file order, each able to use ``nodes`` and the ones before it;
    overrides from the command line replace a parameter's value before it is used."""
    unknown = sorted(set(overrides) - set(scenario.parameters) - {"nodes"})
    if unknown:
        known = ", ".join(scenario.parameters) or "none"
        raise UserError(f"{where} has no parameter {one_line(', '.join(unknown))} (known: "
                        f"{one_line(known)})")
    values = Values({"nodes": nodes}, where)
    for name, default in scenario.parameters.items():
        value = overrides.get(name, default)
        if isinstance(value, str) and value.startswith("="):
            value = values.number(value, f"parameters.{name}")
        values.names[name] = value
    namespaces = max(1, values.integer(scenario.namespaces, "namespaces"))
    if namespaces > MAX_NAMESPACES:
        raise UserError(f"{where}: field 'namespaces': {namespaces} namespaces, more than "
                        f"{MAX_NAMESPACES}")
    values.names["namespaces"] = namespaces
    return values


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set name=value``: YAML scalars, so numbers stay numbers."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--set {one_line(pair)}: expected NAME=VALUE")
        try:
            out[name.strip()] = yaml.safe_load(raw) if raw else ""
        except (yaml.YAMLError, RecursionError):
            out[name.strip()] = raw
    return out
