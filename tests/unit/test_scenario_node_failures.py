"""A scenario's node failures: expressions evaluated over the cluster's size, switched
off by a zero fraction, refused with their field when bad."""

from __future__ import annotations

import pytest

from pykubemark.errors import UserError
from pykubemark.load.scenario import load_scenario, parse_scenario, resolve_parameters
from pykubemark.runner import node_failures

TEXT = """
name: nf
parameters: {share: 0.1, period: 30}
node_failures:
  - action: chaosmonkey
    fraction: share
    interval: "period * 2"
    downtime: period
phases:
  - name: p
    node_failures:
      - {action: stop, nodes: [hollow-0], after: 5, duration: "nodes"}
      - {action: flap, fraction: "share / 2", period: period}
"""


def test_node_failures_are_evaluated_per_run_and_per_phase() -> None:
    scenario = parse_scenario(TEXT, "scenario nf.yaml")
    values = resolve_parameters(scenario, 40, {}, "nf")
    [run_wide] = node_failures(scenario.node_failures, values, "node_failures")
    assert (run_wide.action, run_wide.fraction, run_wide.interval, run_wide.downtime) == \
        ("chaosmonkey", 0.1, 60, 30)
    stop, flap = node_failures(scenario.phases[0].node_failures, values, "x")
    assert (stop.nodes, stop.after, stop.duration) == (["hollow-0"], 5, 40)
    assert (flap.fraction, flap.period) == (0.05, 30)


def test_a_zero_fraction_is_no_failure() -> None:
    scenario = parse_scenario(TEXT, "scenario nf.yaml")
    values = resolve_parameters(scenario, 40, {"share": 0}, "nf")
    assert node_failures(scenario.node_failures, values, "node_failures") == []
    assert [f.action for f in node_failures(scenario.phases[0].node_failures, values, "x")] \
        == ["stop"]


def test_a_bad_node_failure_names_its_field() -> None:
    scenario = parse_scenario(TEXT, "scenario nf.yaml")
    values = resolve_parameters(scenario, 40, {"period": 0}, "nf")
    with pytest.raises(UserError, match=r"node_failures\[0\].*interval"):
        node_failures(scenario.node_failures, values, "node_failures")
    with pytest.raises(UserError, match=r"line 5.*node_failures.*melt"):
        parse_scenario(TEXT.replace("action: chaosmonkey", "action: melt"), "s")


def test_failures_scenario_flaps_nodes_unless_switched_off() -> None:
    scenario = load_scenario("failures")
    [failing] = [p for p in scenario.phases if p.node_failures]
    values = resolve_parameters(scenario, 100, {}, "failures")
    [flap] = node_failures(failing.node_failures, values, "x")
    assert (flap.action, flap.fraction, flap.duration) == ("flap", 0.01,
                                                           values.names["hold_seconds"])
    values = resolve_parameters(scenario, 100, {"node_flap_fraction": 0}, "failures")
    assert node_failures(failing.node_failures, values, "x") == []
