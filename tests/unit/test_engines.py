"""Engines by name, and the checks `up` and `hollow` make before anything starts: they
live in the packages now, so they are tried here without a command line or a cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pykubemark.cli import cli, main
from pykubemark.cli.options import node_options
from pykubemark.engines import ENGINES, HollowOptions, NodeOptions, register_rate
from pykubemark.errors import Interrupted, UserError
from pykubemark.hollow.launch import for_shard, kubelet_release

SRC = Path(__file__).resolve().parents[2] / "src" / "pykubemark"


def test_register_rate_defaults_by_engine_and_refuses_negative() -> None:
    assert register_rate(ENGINES["pykubemark"], None) == 50.0
    assert register_rate(ENGINES["kubemark"], None) == 2.0
    assert register_rate(ENGINES["kubemark"], 0) == 0
    with pytest.raises(UserError, match=r"^--register-rate -1 is negative$"):
        register_rate(ENGINES["pykubemark"], -1.0)


def test_kubemark_refuses_the_options_of_pykubemark_nodes() -> None:
    ENGINES["kubemark"].check(NodeOptions(count=3, prefix="g", register_rate=1.0))
    with pytest.raises(UserError) as info:
        ENGINES["kubemark"].check(NodeOptions(count=3, fidelity="lite", processes=2,
                                              kubelet_api=False))
    assert str(info.value) == ("--fidelity, --processes, --kubelet-api apply to the "
                               "pykubemark engine only, not --engine kubemark")


def test_pykubemark_refuses_a_node_range_too_small(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("node_ip_base: 127.9.0.0/30\n")
    ENGINES["pykubemark"].check(NodeOptions(count=2, profile_file=profile))
    ENGINES["pykubemark"].check(NodeOptions(count=10, profile_file=profile, kubelet_api=False))
    with pytest.raises(UserError, match="node_ip_base: node index 9 does not fit"):
        ENGINES["pykubemark"].check(NodeOptions(count=10, profile_file=profile))


def test_a_shard_takes_its_share_of_the_nodes() -> None:
    options = HollowOptions(nodes=NodeOptions(count=100, prefix="shard"),
                            pod_name="pykubemark-2", total_nodes=250)
    nodes = for_shard(options).nodes
    assert (nodes.prefix, nodes.count) == ("shard-2", 50)
    assert for_shard(HollowOptions(nodes=NodeOptions(count=5))) \
        == HollowOptions(nodes=NodeOptions(count=5))
    with pytest.raises(UserError, match=r"^shard 3 has no nodes of --total-nodes 250$"):
        for_shard(HollowOptions(nodes=NodeOptions(count=100), pod_name="p-3", total_nodes=250))
    with pytest.raises(UserError, match=r"^--shard-from-pod-name: pod name 'p' does not end"):
        for_shard(HollowOptions(nodes=NodeOptions(count=1), pod_name="p"))


def test_the_release_acted_as_is_asked_or_the_apiservers() -> None:
    assert str(kubelet_release("1.33.1", {"gitVersion": "v1.37.2"})) == "1.33.1"
    assert str(kubelet_release(None, {"gitVersion": "v1.37.2"})) == "1.37.2"
    with pytest.raises(UserError, match="name one with --kubelet-version"):
        kubelet_release(None, {"gitVersion": "custom"})


def test_node_options_reach_the_command_as_one_struct() -> None:
    seen: list[tuple[NodeOptions, str]] = []

    @click.command()
    @click.option("--nodes", type=int, default=0)
    @node_options
    def command(nodes: NodeOptions, engine: str) -> None:
        seen.append((nodes, engine))

    result = CliRunner().invoke(command, ["--nodes", "4", "--prefix", "p", "--no-events",
                                          "--engine", "kubemark", "--register-rate", "3"])
    assert result.exit_code == 0, result.output
    assert seen == [(NodeOptions(count=4, prefix="p", events=False, register_rate=3.0),
                     "kubemark")]


@pytest.mark.parametrize(("error", "code"), [(UserError, 2), (Interrupted, 130)])
def test_main_prints_a_user_error_as_one_line(error: type[UserError], code: int,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    @click.command(name="fail-for-test")
    def fail() -> None:
        raise error("it went wrong")

    cli.add_command(fail)
    monkeypatch.setattr(sys, "argv", ["pykubemark", "fail-for-test"])
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        cli.commands.pop("fail-for-test")
    assert exited.value.code == code
    assert capsys.readouterr().err == "pykubemark: it went wrong\n"


def test_only_the_command_line_imports_click() -> None:
    importers = [path.relative_to(SRC) for path in SRC.rglob("*.py")
                 if "import click" in path.read_text() or "from click" in path.read_text()]
    assert importers and all(path.parts[0] == "cli" for path in importers), importers


def test_stop_stops_only_the_engines_processes(tmp_path: Path) -> None:
    from pykubemark.cluster import processes

    started = {name: processes.start(name, ["sleep", "60"], tmp_path / f"{name}.log")
               for name in ("g-0-kubelet", "g-0-proxy", "etcd")}

    class State:
        def running(self) -> list:
            return [proc for proc in started.values() if proc.alive()]

    class Cluster:
        state = State()

    try:
        nodes = NodeOptions(count=1, prefix="g")
        assert ENGINES["kubemark"].node_names(nodes) == ["g-0"]
        assert sorted(ENGINES["kubemark"].stop(Cluster(), nodes)) == ["g-0-kubelet",
                                                                      "g-0-proxy"]
        assert [proc.name for proc in State().running()] == ["etcd"]
    finally:
        processes.stop(list(started.values()))
