"""Scenarios as data: the built-ins load, sizes follow the cluster, bad fields are named
with their line, and the plan holds exactly the pods the scenario asks for."""

from __future__ import annotations

import pytest

from pykubemark.errors import UserError
from pykubemark.load.generator import LoadGenerator
from pykubemark.load.scenario import (
    builtin_names,
    load_scenario,
    parse_overrides,
    parse_scenario,
    resolve_parameters,
    scenario_text,
)


def plan(name: str, nodes: int, **overrides):
    scenario = load_scenario(name)
    values = resolve_parameters(scenario, nodes, overrides, name)
    generator = LoadGenerator(None, scenario, values, run_id="r1", test=name,  # type: ignore[arg-type]
                              nodes=nodes)
    return scenario, values, {phase.name: generator.plan(phase) for phase in scenario.phases}


def test_builtins_are_files_of_the_user_format(tmp_path) -> None:
    assert {"density", "load"} <= set(builtin_names())
    for name in builtin_names():
        copy = tmp_path / f"{name}.yaml"
        copy.write_text(scenario_text(name)[0])
        assert load_scenario(str(copy)) == load_scenario(name)


@pytest.mark.parametrize("nodes,pods_per_node", [(20, 10), (250, 30), (2000, 30)])
def test_density_saturates_every_node_exactly(nodes: int, pods_per_node: int) -> None:
    _, values, phases = plan("density", nodes, pods_per_node=pods_per_node)
    saturation = phases["saturation"]
    assert values.names["namespaces"] == max(1, nodes // 100)
    assert {p.kind for p in saturation} == {"Deployment"}
    total = sum(p.pods for p in saturation)
    per_namespace = nodes * pods_per_node // values.names["namespaces"]
    assert total == per_namespace * values.names["namespaces"]
    assert all(0 < p.pods <= 30 for p in saturation)
    assert len({p.namespace for p in saturation}) == values.names["namespaces"]
    latency = phases["latency"]
    assert all(p.pods == 1 for p in latency)
    assert sum(p.pods for p in latency) >= min(nodes, 500) - values.names["namespaces"]


def test_load_has_the_clusterloader2_shape() -> None:
    _, values, phases = plan("load", 1000)
    created = phases["create"]
    namespaces = values.names["namespaces"]
    assert namespaces == 10
    sizes = {}
    for p in created:
        if p.kind == "Deployment":
            sizes.setdefault(p.name.rsplit("-", 1)[0], []).append(p.pods)
    per_namespace = 1000 * 30 // namespaces
    # a quarter of the pods in big, a quarter in medium, half in small Deployments
    assert sum(sizes["big"]) == namespaces * (per_namespace // 4 // 250) * 250
    assert sum(sizes["medium"]) == namespaces * (per_namespace // 4 // 30) * 30
    assert sum(sizes["small"]) == namespaces * (per_namespace // 2 // 5) * 5
    deployments = [p for p in created if p.kind == "Deployment"]
    services = [p for p in created if p.kind == "Service"]
    assert len(services) == pytest.approx(len(deployments) / 2, abs=3 * namespaces)
    # one ConfigMap and one Secret per Deployment, mounted by its pods
    for kind in ("ConfigMap", "Secret"):
        assert len([p for p in created if p.kind == kind]) == len(deployments)
    volumes = deployments[0].body["spec"]["template"]["spec"]["volumes"]
    assert {v.get("configMap", {}).get("name") or v["secret"]["secretName"]
            for v in volumes} == {deployments[0].name}
    assert {p.kind for p in created} >= {"Job", "DaemonSet"}
    assert [p.pods for p in created if p.kind == "DaemonSet"] == [1000]
    # one Deployment scaled by an HPA on CPU: its pods request CPU
    (hpa,) = [p for p in created if p.kind == "HorizontalPodAutoscaler"]
    target = next(p for p in deployments if p.name == hpa.name)
    assert hpa.body["spec"]["scaleTargetRef"]["name"] == target.name
    assert hpa.body["spec"]["minReplicas"] == target.pods
    container = target.body["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "100m"


def test_every_pod_carries_the_run_labels() -> None:
    _, _, phases = plan("density", 20, pods_per_node=3)
    for item in phases["saturation"] + phases["latency"]:
        labels = item.body["spec"]["template"]["metadata"]["labels"]
        assert labels["pykubemark.io/run"] == "r1"
        assert labels["pykubemark.io/group"] in ("saturation", "latency")


def test_overrides_replace_parameters_and_unknown_ones_are_refused() -> None:
    _, values, _ = plan("density", 10, qps=50, pods_per_node=7)
    assert values.names["qps"] == 50 and values.names["pods_per_node"] == 7
    with pytest.raises(UserError, match="no parameter podz"):
        plan("density", 10, podz=3)
    assert parse_overrides(("qps=12.5", "name=x")) == {"qps": 12.5, "name": "x"}
    with pytest.raises(UserError, match="NAME=VALUE"):
        parse_overrides(("qps",))


def error(text: str) -> str:
    with pytest.raises(UserError) as info:
        parse_scenario(text, "scenario my.yaml")
    message = info.value.message
    assert "\n" not in message
    return message


GOOD = """name: mine
parameters:
  qps: 10
phases:
  - name: one
    create:
      - kind: Deployment
        name: web
        count: 2
"""


def test_a_bad_field_is_named_with_its_line() -> None:
    assert parse_scenario(GOOD, "x").phases[0].create[0].count == 2
    message = error(GOOD.replace("count: 2", "count: [2]"))
    assert "line 9" in message and "phases[0].create[0].count" in message
    message = error(GOOD.replace("kind: Deployment", "kind: Deploymnet"))
    assert "line 7" in message and "kind" in message
    message = error(GOOD.replace("        count: 2", "        cuont: 2"))
    assert "cuont" in message and "line 7" in message
    message = error(GOOD + "  - name: two\n    wait: forever\n")
    assert "line 11" in message and "wait" in message
    assert "line 3: not valid YAML" in error("name: x\nphases:\n  - name: a: b\n")


def test_bad_measurement_and_bad_expression_are_refused() -> None:
    assert "unknown measurement" in error(GOOD + "measurements: [Nope]\n")
    scenario = parse_scenario(GOOD.replace("count: 2", "count: nodes / zero"), "x")
    values = resolve_parameters(scenario, 5, {}, "scenario my.yaml")
    generator = LoadGenerator(None, scenario, values, run_id="r", test="t")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="count"):
        generator.plan(scenario.phases[0])


def test_unknown_scenario_lists_the_builtins() -> None:
    with pytest.raises(UserError, match="density"):
        load_scenario("no-such-scenario")


# -- failures: annotations are the contract with the hollow nodes -----------------------------
def test_failures_scenario_annotates_only_its_failing_pods() -> None:
    _, _, phases = plan("failures", 100, pods_per_node=10)
    healthy = phases["saturation"]
    assert sum(p.pods for p in healthy) == 1000
    assert all(not p.body["spec"]["template"]["metadata"]["annotations"] for p in healthy)
    failing = phases["failing"]
    crashing = [p for p in failing if p.kind == "Deployment" and p.name.startswith("crashing")]
    flapping = [p for p in failing if p.kind == "Deployment" and p.name.startswith("flapping")]
    assert sum(p.pods for p in crashing) == 50  # 5 % of the healthy pods
    assert sum(p.pods for p in flapping) == 10
    assert crashing[0].body["spec"]["template"]["metadata"]["annotations"] == {
        "pykubemark.io/failure": "crashloop", "pykubemark.io/failure-weight": "1",
        "pykubemark.io/exit-code": "1", "pykubemark.io/run-seconds": "30"}
    assert flapping[0].body["spec"]["template"]["metadata"]["annotations"] == {
        "pykubemark.io/failure": "unready", "pykubemark.io/failure-weight": "1",
        "pykubemark.io/ready-flap-seconds": "20"}
    assert len([p for p in failing if p.kind == "Service"]) == len(flapping)
    _, _, phases = plan("failures", 100, crash_fraction=0, flap_fraction=0)
    assert [p for p in phases["failing"] if p.pods] == []


def test_failure_weight_is_an_expression_and_checked() -> None:
    text = """
name: w
parameters: {share: 0.25}
failures:
  - failure: oomkilled
    weight: share
    names: [web]
phases:
  - name: p
    create:
      - {kind: Deployment, name: web, replicas: 4}
      - {kind: Deployment, name: other, replicas: 4}
"""
    scenario = parse_scenario(text, "scenario w.yaml")
    values = resolve_parameters(scenario, 3, {}, "w")
    generator = LoadGenerator(None, scenario, values, run_id="r", test="w",  # type: ignore[arg-type]
                              nodes=3)
    web, other = generator.plan(scenario.phases[0])
    assert web.body["spec"]["template"]["metadata"]["annotations"] == {
        "pykubemark.io/failure": "oomkilled", "pykubemark.io/failure-weight": "0.25"}
    assert other.body["spec"]["template"]["metadata"]["annotations"] == {}
    values = resolve_parameters(scenario, 3, {"share": 2}, "w")
    generator = LoadGenerator(None, scenario, values, run_id="r", test="w",  # type: ignore[arg-type]
                              nodes=3)
    with pytest.raises(UserError, match="weight"):
        generator.plan(scenario.phases[0])


def test_unknown_failure_is_named_with_its_line() -> None:
    message = error("name: x\nfailures:\n  - failure: explode\nphases:\n  - name: p\n")
    assert "line 3" in message and "failures" in message and "explode" in message


def test_a_phase_that_deletes_waits_in_proportion_to_the_pods_it_removes():
    from pykubemark.load.generator import pods_removed
    from pykubemark.load.scenario import DeleteSpec, Phase

    created = {("Deployment", "ns-1", "saturation-0"): 30,
               ("Deployment", "ns-2", "saturation-1"): 30,
               ("Deployment", "ns-1", "latency-0"): 1}
    latency = Phase(name="delete-latency", delete=[DeleteSpec(kind="Deployment",
                                                              name="latency")])
    assert pods_removed(created, latency) == 1
    assert pods_removed(created, Phase(name="cleanup", delete_all=True)) == 61
    assert pods_removed(created, Phase(name="saturation")) == 0
