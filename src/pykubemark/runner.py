"""`pykubemark run`: a scenario's load with the measurements around it, and the reports.

Everything measured is on disk as it is measured; the summary is rewritten after every
phase. Ctrl-C (or SIGTERM) stops the load, stops the measurements (which write what
they saw), deletes what the run created unless asked to keep it, and writes a report
marked partial; a second Ctrl-C exits at once and says what was left behind.

A scenario's node failures go to the chaos file of the local cluster's fleet (the file
`pykubemark chaos` writes): the runner is where `load` (which knows no hollow node) and
`hollow` (which owns the failures) meet. The run removes its own failures when it ends,
however it ends, so its nodes come back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from pykubemark import __version__
from pykubemark.errors import UserError
from pykubemark.hollow import chaos as node_chaos
from pykubemark.kube.client import NETWORK_ERRORS, ApiError, Client
from pykubemark.kube.config import KubeConfig
from pykubemark.load.generator import LoadError, LoadGenerator, Progress
from pykubemark.load.scenario import NodeFailureSpec, Scenario, Values, resolve_parameters
from pykubemark.load.templates import GROUP_LABEL, RUN_LABEL
from pykubemark.measure import Context, Measurement, MeasurementError
from pykubemark.measure.registry import (
    API_RESPONSIVENESS,
    MEASUREMENTS,
    POD_STARTUP,
    RunSetup,
)
from pykubemark.measure.slos import overall_verdict
from pykubemark.report.output import Output
from pykubemark.report.summary import (
    Cluster,
    LeftBehind,
    NodeFailureRecord,
    PhaseRecord,
    RunSummary,
    encode_summary,
)

log = logging.getLogger(__name__)
#: clusterloader2's identifiers for the density test's two pod groups.
#: Seconds `run --prometheus` waits at the end for the last scrape of the run to land
#: (`up --prometheus` scrapes every 5 s).
PROMETHEUS_SETTLE = 6.0
IDENTIFIERS = {"saturation": "SaturationPodStartupLatency", "latency": "PodStartupLatency"}


@dataclass
class Target:
    """The cluster under test: its API, and what is known of it when it runs here."""

    config: KubeConfig
    local: str | None = None
    processes: dict[str, int] = field(default_factory=dict)
    etcd_metrics_url: str | None = None
    flags: dict[str, list[str]] = field(default_factory=dict)
    #: Where its hollow fleet reads node failures (a local cluster's, as `chaos --name`).
    chaos_file: Path | None = None
    #: Addons of a local cluster (name -> version), and its own Prometheus if it runs one.
    addons: dict[str, str] = field(default_factory=dict)
    prometheus: str | None = None

    @classmethod
    def from_local(cls, name: str) -> Target:
        """A cluster `pykubemark up` started: its admin kubeconfig, and its processes to
        sample, etcd to scrape, and the flags in force to report."""
        from pykubemark.cluster.control_plane import LocalCluster
        from pykubemark.cluster.hollow import chaos_file
        from pykubemark.cluster.state import load
        from pykubemark.kube.config import load_kubeconfig

        state = load(name)
        running = state.running()
        if not any(p.name == "kube-apiserver" for p in running):
            raise UserError(f"cluster '{name}' is not running (pykubemark up --name {name})")
        etcd = state.ports.get("etcd")
        prometheus = state.options.get("prometheus")
        if not any(p.name == "prometheus" for p in running):
            prometheus = None
        return cls(config=load_kubeconfig(state.kubeconfig), local=name,
                   addons=dict(state.addons),
                   prometheus=prometheus if isinstance(prometheus, str) else None,
                   processes={p.name: p.pid for p in running},
                   etcd_metrics_url=f"http://127.0.0.1:{etcd}/metrics" if etcd else None,
                   flags={p.name: [a for a in p.argv[1:] if a.startswith("--")]
                          for p in running},
                   chaos_file=chaos_file(LocalCluster.load(name)))


@dataclass
class RunOptions:
    scenario: Scenario
    scenario_source: str
    target: Target
    out: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    nodes: int | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    test_name: str = ""
    #: `run --prometheus URL`: the figures that can come from it do (measure/promql.py).
    prometheus: str | None = None


def identifier(group: str) -> str:
    return IDENTIFIERS.get(group, f"{group.title().replace('-', '')}PodStartupLatency")


def utc(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_failures(specs: list[NodeFailureSpec], values: Values,
                  field_name: str) -> list[node_chaos.NodeFailure]:
    """A scenario's node failures as the fleet takes them; those that select no node
    (a fraction set to 0) are left out."""
    out = []
    for i, spec in enumerate(specs):
        where = f"{field_name}[{i}]"
        numbers = spec.evaluate(values, where)
        if numbers is None:
            continue
        try:
            out.append(node_chaos.NodeFailure(**numbers))
        except ValueError as exc:
            raise UserError(f"{values.where}: field '{where}': {exc}") from None
    return out


class _NodeList(msgspec.Struct):
    items: list[dict[str, Any]] = []


def schedulable(node: dict[str, Any], selector: dict[str, str]) -> bool:
    """Ready, not cordoned, not tainted NoSchedule/NoExecute, matching the selector."""
    labels = node.get("metadata", {}).get("labels", {})
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    spec = node.get("spec", {})
    if spec.get("unschedulable"):
        return False
    if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


class Run:
    def __init__(self, options: RunOptions, *,
                 on_progress: Callable[[str, Progress], None] | None = None) -> None:
        self.options = options
        self.scenario = options.scenario
        self.run_id = secrets.token_hex(3)
        self.test = options.test_name or self.scenario.name
        self.on_progress = on_progress or (lambda _phase, _progress: None)
        self.started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._output: Output | None = None
        self.client = Client(options.target.config, user_agent=f"pykubemark-run/{__version__}")
        self.generator: LoadGenerator | None = None
        self.measurements: list[Measurement] = []
        self.phase_measurements: dict[str, list[Measurement]] = {}
        #: Rewritten to summary.json as the run goes (prepare() fills it in).
        self.summary = RunSummary()
        self.left_behind: list[str] = []
        #: Node failures by phase index (None: the whole run's), the ids of those scheduled.
        self.node_failures: dict[int | None, list[node_chaos.NodeFailure]] = {}
        self.scheduled_failures: list[str] = []

    # -- preparation -------------------------------------------------------------------
    def prometheus_url(self) -> str | None:
        """The Prometheus to read from: the one asked for, else for the scenario's alerts
        the local cluster's own."""
        if self.options.prometheus:
            return self.options.prometheus
        if self.scenario.prometheus_alerts:
            return self.options.target.prometheus
        return None

    async def prepare(self) -> Values:
        """Everything that can refuse the run, before anything is created."""
        if self.options.prometheus:
            from pykubemark.measure.promql import Prometheus

            await asyncio.to_thread(Prometheus(self.options.prometheus, timeout=10).check)
        try:
            version = msgspec.json.decode(await self.client.get("/version"))
            nodes = msgspec.json.decode(await self.client.get("/api/v1/nodes"), type=_NodeList)
        except ApiError as exc:
            raise UserError(f"apiserver {self.client.config.server} answered {exc.status} "
                            f"{exc.reason}: {exc.message}") from None
        except NETWORK_ERRORS as exc:
            raise UserError(f"cannot reach apiserver {self.client.config.server}: "
                            f"{str(exc) or type(exc).__name__}") from None
        ready = sum(schedulable(n, self.options.node_selector) for n in nodes.items)
        count = self.options.nodes if self.options.nodes is not None else ready
        if count < 1:
            raise UserError(f"no Ready schedulable nodes on {self.client.config.server}"
                            + (f" matching {self.options.node_selector}"
                               if self.options.node_selector else "")
                            + " (start hollow nodes, or pass --nodes)")
        values = resolve_parameters(self.scenario, count, self.options.overrides,
                                    self.options.scenario_source)
        self.generator = LoadGenerator(self.client, self.scenario, values, run_id=self.run_id,
                                       test=self.test, node_selector=self.options.node_selector,
                                       nodes=count)
        self.generator.check()  # every expression evaluated once, up front
        self.node_failures = {None: node_failures(self.scenario.node_failures, values,
                                                  "node_failures")}
        for i, phase in enumerate(self.scenario.phases):
            self.node_failures[i] = node_failures(
                phase.node_failures, values, f"phases[{i}].node_failures")
        target = self.options.target
        if any(self.node_failures.values()) and target.chaos_file is None:
            raise UserError(f"{self.options.scenario_source} fails hollow nodes (node_failures)"
                            f": that needs a local cluster's fleet (--cluster NAME), not "
                            f"{target.config.server}")
        self._output = Output(self.options.out, self.test, self.started)
        self.summary = RunSummary(
            pykubemark=__version__,
            test=self.test,
            scenario=self.options.scenario_source,
            run_id=self.run_id,
            started=utc(self.started),
            finished=None,
            partial=True,
            status="running",
            cluster=Cluster(server=target.config.server,
                            version=version.get("gitVersion", ""),
                            nodes=count, ready_nodes=ready, local=target.local,
                            flags=target.flags,
                            addons=dict(target.addons) if target.addons else UNSET,
                            prometheus=self.prometheus_url() or UNSET),
            parameters=dict(values.names),
            node_selector=self.options.node_selector,
            verdict=overall_verdict([]),
        )
        self.write_summary()
        return values

    @property
    def output(self) -> Output:
        assert self._output is not None, "prepare() first"
        return self._output

    def context(self) -> Context:
        target = self.options.target
        return Context(client=self.client, output=self.output, processes=target.processes,
                       etcd_metrics_url=target.etcd_metrics_url)

    # -- the run -----------------------------------------------------------------------
    async def execute(self) -> None:
        assert self.generator is not None
        generator = self.generator
        ctx = self.context()
        selector = f"{RUN_LABEL}={self.run_id}"
        for group in self.scenario.groups():
            self.measurements.append(POD_STARTUP.cls(
                ctx, selector=f"{selector},{GROUP_LABEL}={group}", identifier=identifier(group),
                threshold=self.scenario.pod_startup_slo))
        setup = RunSetup(
            pods=selector,
            nodes=",".join(f"{k}={v}" for k, v in self.options.node_selector.items()),
            # nodes the scenario fails on purpose are data, not a verdict
            judge_nodes=not any(self.node_failures.values()))
        explicit = self.options.prometheus
        for name in self.scenario.measurements:
            # From a user's Prometheus, the apiserver's /metrics need not be readable: its
            # figures replace the direct ones, except on a local cluster (both, compared).
            if explicit and name == API_RESPONSIVENESS.name and self.options.target.local is None:
                continue
            if MEASUREMENTS[name].available(ctx):
                self.measurements.append(MEASUREMENTS[name].create(ctx, setup))
        if url := self.prometheus_url():
            from pykubemark.measure.promql import PrometheusAlert, PrometheusSource

            self.measurements.append(PrometheusSource(
                ctx, url=url, api=bool(explicit), scheduling=bool(explicit),
                resources=bool(explicit), settle=PROMETHEUS_SETTLE,
                alerts=[PrometheusAlert(a.expr, a.description, a.severity)
                        for a in self.scenario.prometheus_alerts]))
        await asyncio.gather(*(m.start() for m in self.measurements))
        self.fail_nodes(None)
        await generator.create_namespaces()
        for index, phase in enumerate(self.scenario.phases):
            record = PhaseRecord(name=phase.name, started=utc(), finished=None)
            self.summary.phases.append(record)
            self.fail_nodes(index)
            self.write_summary()
            scoped = [MEASUREMENTS[name].create(ctx, setup) for name in phase.measurements
                      if MEASUREMENTS[name].available(ctx)]
            self.phase_measurements[phase.name] = scoped
            await asyncio.gather(*(m.start() for m in scoped))
            try:
                record.objects = await self._with_progress(phase.name,
                                                           generator.run_phase(phase))
            finally:
                await asyncio.gather(*(m.stop() for m in scoped), return_exceptions=True)
                record.finished = utc()
                self.write_summary()

    def fail_nodes(self, phase: int | None) -> None:
        """Schedule the node failures of a phase (None: of the run) from now on."""
        path = self.options.target.chaos_file
        for failure in self.node_failures.get(phase, []):
            assert path is not None, "refused in prepare()"
            scheduled = node_chaos.add(path, failure)
            self.scheduled_failures.append(scheduled.id)
            self.summary.node_failures.append(NodeFailureRecord(
                phase=None if phase is None else self.scenario.phases[phase].name,
                id=scheduled.id,
                failure=msgspec.structs.asdict(failure),
                start=utc(dt.datetime.fromtimestamp(scheduled.start, dt.UTC)),
                end=(utc(dt.datetime.fromtimestamp(scheduled.end, dt.UTC))
                     if scheduled.end is not None else None)))

    def restore_nodes(self) -> None:
        """Remove the run's node failures from the chaos file: its nodes come back."""
        path = self.options.target.chaos_file
        if path is None or not self.scheduled_failures:
            return
        try:
            node_chaos.remove(path, self.scheduled_failures)
        except (OSError, UserError) as exc:
            log.error("the run's node failures could not be removed from %s: %s", path, exc)
            self.summary.node_failures_left = str(path)
            return
        self.scheduled_failures = []

    async def _with_progress(self, phase: str, work: Any) -> Any:
        assert self.generator is not None
        task = asyncio.ensure_future(work)
        while not task.done():
            self.on_progress(phase, self.generator.progress)
            await asyncio.wait([task], timeout=0.5)
        self.on_progress(phase, self.generator.progress)
        return task.result()

    async def finish(self, status: str) -> None:
        """Stop measuring, clean up unless kept, write the summary and the report."""
        every = self.measurements + [m for ms in self.phase_measurements.values() for m in ms]
        await asyncio.gather(*(m.stop() for m in every), return_exceptions=True)
        self.restore_nodes()  # before the cleanup: a node that is down confirms no deletion
        if self.generator is not None and self.generator.namespaces_created \
                and not self.options.keep:
            self.left_behind = await self._with_progress("cleanup", self.generator.cleanup())
        self.summary.slos = [slo for m in every for slo in m.slos()]
        self.summary.verdict = overall_verdict(self.summary.slos)
        self.summary.status = status
        self.summary.partial = status != "completed"
        self.summary.finished = utc()
        if self.left_behind:
            self.summary.left_behind = LeftBehind(namespaces=self.left_behind)
        self.write_summary()
        await self.client.close()

    def write_summary(self) -> None:
        self.summary.files.perfdata = sorted(
            p.name for p in self.output.directory.glob(f"*_{self.test}_*.json"))
        self.output.write_json("summary.json", encode_summary(self.summary))

    def write_report(self) -> Path | None:
        if self._output is None:
            return None
        try:
            from pykubemark.report.html import write_html

            return write_html(self.output.directory)
        except Exception:  # a report that fails to render must not lose the data
            log.exception("report.html could not be written; the data files are intact")
            return None


def run(options: RunOptions, *, on_progress: Callable[[str, Progress], None] | None = None,
        on_ready: Callable[[Run, Values], None] | None = None) -> Run:
    """Run a scenario to the end, or until SIGINT/SIGTERM; always leave a report."""
    the_run = Run(options, on_progress=on_progress)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        try:
            values = await the_run.prepare()
        except BaseException:
            await the_run.client.close()
            raise
        if on_ready:
            on_ready(the_run, values)
        task = asyncio.current_task()
        assert task is not None
        interrupts = 0

        def interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                task.cancel()
                return
            run_id = the_run.run_id
            the_run.restore_nodes()
            sys.stderr.write(
                f"\npykubemark: stopped at once; left behind: the namespaces labelled "
                f"{RUN_LABEL}={run_id} (kubectl delete namespace -l {RUN_LABEL}={run_id}); "
                f"results so far in {the_run.output.directory}\n")
            os._exit(130)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupt)
        status = "completed"
        try:
            await the_run.execute()
        except asyncio.CancelledError:
            status = "interrupted"
            task.uncancel()
        except (LoadError, MeasurementError) as exc:
            status = f"failed: {exc}"
        except BaseException:
            the_run.restore_nodes()
            raise
        try:
            await the_run.finish(status)
        except asyncio.CancelledError:
            task.uncancel()
            the_run.summary.status = f"{status}; cleanup interrupted"
            the_run.write_summary()
        except (ApiError, *NETWORK_ERRORS, LoadError) as exc:
            the_run.summary.status = f"{status}; cleanup failed: {exc}"
            the_run.write_summary()
        finally:
            the_run.restore_nodes()  # done in finish(), unless that was cut short

    asyncio.run(main())
    the_run.write_report()
    return the_run
