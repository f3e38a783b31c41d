"""Property-based fuzzing of what users hand pykubemark: scenario YAML (structured, mutated
from the built-ins, and raw text), `--set` expressions, and kubeconfig files. Every input
either loads or is refused with a `UserError` — never another exception, never a hang.

The unit tier runs a bounded number of examples per target (seconds);
``PYKUBEMARK_FUZZ_EXAMPLES=20000`` runs longer (docs/scenarios.md#fuzzing says how long
it ran and what it found).
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pykubemark.contract import NODE_FAILURE_ACTIONS as NODE_FAILURES
from pykubemark.contract import POD_FAILURES as FAILURES
from pykubemark.errors import UserError
from pykubemark.kube.config import flatten_kubeconfig, load_kubeconfig
from pykubemark.load.generator import LoadGenerator
from pykubemark.load.scenario import (
    KINDS,
    RUN_MEASUREMENTS,
    builtin_names,
    parse_overrides,
    parse_scenario,
    resolve_parameters,
    scenario_text,
)
from pykubemark.runner import node_failures

EXAMPLES = int(os.environ.get("PYKUBEMARK_FUZZ_EXAMPLES", "150"))
#: Seconds one input may take to load or be refused.
LIMIT = 10
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="PYKUBEMARK_FUZZ_EXAMPLES"
                not in os.environ, phases=[Phase.explicit, Phase.reuse, Phase.generate,
                                           Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def time_limit(seconds: int = LIMIT) -> Iterator[None]:
    """A hang is a finding too: an input that takes this long fails the test."""
    def expired(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"still loading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def loads_or_refuses(load: Callable[[], Any]) -> None:
    """The property: a `UserError` of one line, or nothing raised."""
    with time_limit():
        try:
            load()
        except UserError as exc:
            assert "\n" not in exc.message.strip(), exc.message
            assert exc.message.strip()


# -- strategies ----------------------------------------------------------------------------
NAMES = ("nodes", "namespaces", "pods_per_node", "qps", "deployment_size", "latency_pods",
         "i", "pods", "x", "range", "lipsum", "namespace", "cycler", "joiner", "dict")
FUNCTIONS = ("min", "max", "int", "round", "ceil", "floor", "uniform", "randint", "range",
             "lipsum", "dict", "joiner", "cycler", "namespace", "x")
LITERALS = ("''", "'a'", "[]", "[1, 2]", "{}", "()", "none", "true", "false", "None", "nan",
            "inf", "1e308", "1e309", "-0.0", "0", "1", "2", "10", "1000", "99999999999999999999")
OPERATORS = ("+", "-", "*", "/", "//", "%", "**", "<", ">", "==", "!=", "and", "or", "in",
             "~", "is", "not in")
ATTRIBUTES = ("__class__", "real", "imag", "bit_length", "__mro__", "mro", "as_integer_ratio",
              "__init__", "__globals__", "items")
FILTERS = ("int", "float", "abs", "round", "length", "first", "list", "string", "sum",
           "default(1)", "random", "unique", "max", "batch(2)", "unknown")

atoms = st.one_of(
    st.sampled_from(NAMES), st.sampled_from(LITERALS),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(OPERATORS), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(children, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"),
        children.map(lambda c: f"-{c}"),
        children.map(lambda c: f"not {c}"),
        st.tuples(children, st.sampled_from(ATTRIBUTES)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, st.sampled_from(FILTERS)).map(lambda t: f"{t[0]} | {t[1]}"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
    )


expressions = st.recursive(atoms, _combine, max_leaves=8)
junk = st.text(alphabet=st.sampled_from(list("(){}[]%#'\"=.,:|~*+-/ 019abxyz_\\\n\t{%}")),
               max_size=30)
plain = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
any_value = st.recursive(plain, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=8)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] | None = None,
           weight: int = 0) -> st.SearchStrategy[Any]:
    """``good``, and with a ``weight``, ``bad`` one time in ``weight + 1``. Most fields
    are well typed here, so that most inputs get past the schema and into the
    expressions; `corrupted` spoils one place of a whole document instead."""
    if bad is None or not weight:
        return good
    # one_of would favour its last branch (draws lean to the ends of a range)
    return st.integers(0, weight).flatmap(lambda k: bad if k == weight // 2 else good)


numbers = mostly(st.one_of(st.integers(-5, 200), st.floats(-1e3, 1e3), expressions,
                           expressions, expressions.map(lambda e: "=" + e)),
                 st.one_of(junk, any_value), 40)
names = mostly(st.text(string.ascii_lowercase + "-", min_size=1, max_size=8))


def mapping(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A mapping of the schema's keys, now and then with one unknown key or not a mapping
    at all."""
    base = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(st.text(max_size=6), any_value, min_size=1, max_size=1)
    return mostly(base, st.tuples(base, extra).map(lambda t: {**t[0], **t[1]}), 200)


def lists(of: st.SearchStrategy[Any], size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(of, max_size=size)


kinds = mostly(st.sampled_from(KINDS))
node_failure = mapping({"action": mostly(st.sampled_from(NODE_FAILURES))}, {
    "nodes": lists(names), "fraction": numbers, "after": numbers, "duration": numbers,
    "period": numbers, "delay": numbers, "interval": numbers, "jitter": numbers,
    "downtime": numbers})
create = mapping({"kind": kinds, "name": names}, {
    "count": numbers, "replicas": numbers, "group": names,
    "service": numbers, "run_seconds": numbers, "namespaces": numbers, "config": mostly(
        st.booleans())})
phase = mapping({"name": names}, {
    "measurements": lists(mostly(st.sampled_from(("SchedulingThroughput",)))),
    "create": lists(create), "scale": lists(mapping({}, {"name": names, "factor": numbers})),
    "delete": lists(mapping({"kind": kinds}, {"name": names})), "delete_all": mostly(st.booleans()),
    "qps": numbers, "wait": mostly(st.sampled_from(("running", "complete", "gone", "none"))),
    "timeout": numbers, "hold": numbers, "node_failures": lists(node_failure)})
failure = mapping({"failure": mostly(st.sampled_from(FAILURES))}, {
    "weight": numbers, "groups": lists(names), "names": lists(names),
    "exit_code": mostly(st.integers(-300, 300)), "run_seconds": numbers,
    "start_delay": numbers, "flap_period": numbers})
scenarios = mapping({"name": names, "phases": st.lists(phase, min_size=1, max_size=3)}, {
    "description": mostly(st.text(max_size=20)),
    "parameters": mostly(st.dictionaries(st.sampled_from(NAMES), numbers, max_size=4)),
    "namespaces": numbers,
    "measurements": lists(mostly(st.sampled_from(RUN_MEASUREMENTS))),
    "pod_startup_slo": mostly(st.floats(-10, 100)), "image": mostly(st.text(max_size=20)),
    "failures": lists(failure),
    "node_failures": lists(node_failure)})

BUILTINS = [scenario_text(name)[0] for name in builtin_names()]
YAML_CHARS = list(":-[]{}&*!|>'\"%@`#,? \n\t0123456789.=abn~")


@st.composite
def mutated(draw: st.DrawFn, texts: list[str]) -> str:
    """A built-in file (or one given) with a few characters changed, inserted or cut."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(("insert", "delete", "replace", "line")))
        char = draw(st.one_of(st.sampled_from(YAML_CHARS), st.characters()))
        if edit == "insert":
            text = text[:at] + char + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif edit == "replace":
            text = text[:at] + char + text[at + 1:]
        else:  # a line repeated or dropped
            lines = text.splitlines(keepends=True)
            k = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[k:k + 1] = draw(st.sampled_from(([], lines[k:k + 1] * 2)))
            text = "".join(lines)
    return text


def _dump(data: Any) -> str:
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return str(data)


@st.composite
def corrupted(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    """A well-formed document with one value somewhere replaced by anything at all."""
    document = draw(documents)
    places: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = (node.items() if isinstance(node, dict)
                 else enumerate(node) if isinstance(node, list) else ())
        for key, child in items:
            places.append((node, key))
            walk(child)

    walk(document)
    if not places:
        return draw(any_value)
    node, key = draw(st.sampled_from(places))
    node[key] = draw(any_value)
    return document


scenario_texts = st.one_of(*[scenarios.map(_dump)] * 3, corrupted(scenarios).map(_dump),
                           *[mutated(BUILTINS)] * 2,
                           st.text(max_size=200), junk)
sets = st.lists(st.one_of(
    st.tuples(st.sampled_from(("pods_per_node", "qps", "deployment_size", "latency_pods",
                               "latency_qps", "nodes", "x", "")),
              st.one_of(expressions.map(lambda e: "=" + e), expressions, junk,
                        st.text(max_size=20))).map(lambda t: f"{t[0]}={t[1]}"),
    st.text(max_size=20)), max_size=4)


# -- targets -------------------------------------------------------------------------------
def load_run(text: str, pairs: tuple[str, ...] = (), nodes: int = 3) -> None:
    """What `pykubemark run` evaluates before it creates anything (`Run.prepare`)."""
    scenario = parse_scenario(text, "scenario fuzz.yaml")
    overrides = parse_overrides(pairs)
    values = resolve_parameters(scenario, nodes, overrides, "scenario fuzz.yaml")
    generator = LoadGenerator(None, scenario, values, run_id="f0", test="fuzz",  # type: ignore[arg-type]
                              nodes=nodes)
    generator.check() if hasattr(generator, "check") else None
    node_failures(scenario.node_failures, values, "node_failures")
    for i, p in enumerate(scenario.phases):
        node_failures(p.node_failures, values, f"phases[{i}].node_failures")


#: Inputs the fuzzing found (or that it would take long to find), each once in every run.
FOUND = [
    "[" * 5000,                                         # RecursionError in the YAML parser
    "name: x\nphases: &p [{name: a, create: *p}]\n",   # an alias inside its own anchor
    "name: x\nphases: [{name: a, hold: .inf}]\n",      # loaded: the run then sleeps forever
    "name: x\nphases: [{name: a, qps: .nan}]\n",       # loaded: a pace of NaN
    "name: x\nphases: [{name: a, timeout: '1e309'}]\n",  # NameError: jinja2's folded `inf`
    "name: x\nphases: [{name: a, hold: '9 ** (9 ** 9)'}]\n",  # a 370-million-digit power
    "name: x\nphases: [{name: a, hold: \"('x' * 10 ** 10) | length\"}]\n",  # 10 GB
    "name: x\nphases: [{name: a, hold: 'lipsum(n=10 ** 9) | length'}]\n",  # hangs
    "name: x\nphases: [{name: a, hold: \"'x' | center(10 ** 10) | length\"}]\n",  # 10 GB
    "name: x\nparameters: {nodes: '=1e308'}\nphases: [{name: a}]\n",  # 1e306 namespaces
    "name: x\nphases: [{name: a, create: [{kind: Pod, name: p, count: '10 ** 12'}]}]\n",
    "name: x\nphases: [{name: a, create: [{kind: Pod, name: p, count: .nan}]}]\n",
    "name: x\nphases: [{name: a, hold: \"'\\n'\"}]\n",  # a message of two lines
    "name: x\nphases: [{name: a, hold: \"[\\n\"}]\n",
]


@FUZZ
@given(text=scenario_texts, pairs=sets, nodes=st.integers(1, 50))
@example(text=BUILTINS[0], pairs=(), nodes=5)
@example(text=BUILTINS[0], pairs=["pods_per_node=a\nb"], nodes=5)
@example(text=BUILTINS[0], pairs=["a\nb"], nodes=5)
@example(text=BUILTINS[0], pairs=["qps=" + "[" * 5000], nodes=5)
def test_scenarios_load_or_are_refused_in_one_line(text: str, pairs: list[str],
                                                   nodes: int) -> None:
    loads_or_refuses(lambda: load_run(text, tuple(pairs), nodes))


def test_inputs_found_load_or_are_refused_in_one_line() -> None:
    for text in FOUND:
        loads_or_refuses(lambda text=text: load_run(text))


def test_files_that_are_not_utf8_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\nphases: [{name: a}]\n".encode("latin-1"))
    for load in (lambda: parse_scenario(*scenario_text(str(path))),
                 lambda: load_kubeconfig(path), lambda: flatten_kubeconfig(path)):
        with pytest.raises(UserError, match="not UTF-8"):
            load()


@FUZZ
@given(pairs=sets, nodes=st.integers(1, 300))
def test_set_expressions_on_the_builtins_load_or_are_refused_in_one_line(
        pairs: list[str], nodes: int) -> None:
    for text in BUILTINS:
        loads_or_refuses(lambda text=text: load_run(text, tuple(pairs), nodes))


CA_PEM = ("-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAA\n"
          "-----END CERTIFICATE-----\n")
paths = st.one_of(st.sampled_from(("ca.crt", "missing.crt", "/", ".", "/dev/null", "sub/",
                                   "junk.pem", "token", "")), any_value)
b64 = st.one_of(st.binary(max_size=40).map(lambda b: __import__("base64").b64encode(b).decode()),
                st.sampled_from(("", "!!!", "====", "YQ", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                                 __import__("base64").b64encode(CA_PEM.encode()).decode())),
                any_value)
kube_cluster = mapping({}, {
    "server": st.one_of(st.sampled_from(("https://127.0.0.1:6443", "http://x", "ftp://x", "",
                                         "https://", "https://[::1", "https://h:99999")),
                        any_value),
    "certificate-authority": paths, "certificate-authority-data": b64,
    "insecure-skip-tls-verify": any_value, "tls-server-name": any_value})
kube_user = mapping({}, {
    "token": any_value, "tokenFile": paths, "username": any_value, "password": any_value,
    "client-certificate": paths, "client-key": paths, "client-certificate-data": b64,
    "client-key-data": b64, "exec": any_value, "auth-provider": any_value})
ref = st.one_of(st.sampled_from(("c", "u", "x", "")), any_value)
named = lambda what, inner: lists(mapping({"name": ref}, {what: inner}))  # noqa: E731
kubeconfigs = mapping({}, {
    "apiVersion": any_value, "kind": any_value, "current-context": ref,
    "clusters": named("cluster", kube_cluster), "users": named("user", kube_user),
    "contexts": named("context", mapping({}, {"cluster": ref, "user": ref,
                                              "namespace": any_value}))})
SAMPLE_KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443",
                                           "insecure-skip-tls-verify": True}}],
    "users": [{"name": "u", "user": {"token": "abc"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]})
kubeconfig_texts = st.one_of(kubeconfigs.map(_dump), corrupted(kubeconfigs).map(_dump),
                             mutated([SAMPLE_KUBECONFIG]), st.text(max_size=100), junk)


@pytest.fixture(scope="module")
def kube_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kubeconfigs")
    (folder / "ca.crt").write_text(CA_PEM)
    (folder / "junk.pem").write_bytes(b"\x00\xffnot a certificate")
    (folder / "token").write_text("abc\n")
    (folder / "sub").mkdir()
    return folder


@FUZZ
@given(text=kubeconfig_texts, context=st.one_of(st.none(), st.sampled_from(("c", "x", ""))))
@example(text="current-context: [a]\n", context=None)  # TypeError: unhashable
@example(text="current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\nclusters: "
              "[{name: c, cluster: {server: 'https://h', certificate-authority: [1]}}]\n",
         context=None)  # TypeError in os.path
@example(text="[" * 5000, context=None)
def test_kubeconfigs_load_or_are_refused_in_one_line(kube_dir: Path, text: str,
                                                     context: str | None) -> None:
    path = kube_dir / "config"
    path.write_text(text, errors="surrogatepass")
    with contextlib.chdir(kube_dir):
        loads_or_refuses(lambda: load_kubeconfig(path, context))
        loads_or_refuses(lambda: flatten_kubeconfig(path, context))


# -- through the command line ---------------------------------------------------------------
def cli(*args: str, home: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "pykubemark", *args], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYKUBEMARK_STATE": str(home / "state"),
                                 "KUBECONFIG": str(home / "none")})
    return result.returncode, result.stderr


def assert_one_line(code: int, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, stderr)
    assert lines[0].startswith("pykubemark: ") and "Traceback" not in stderr
    return lines[0]


def test_found_inputs_through_run_and_hollow_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """What the fuzzing found, as a user meets it: `run` refuses a scenario before it
    reaches any cluster, `hollow` a kubeconfig before it starts any node."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: café\n".encode("latin-1"))
    listed = tmp_path / "listed.yaml"
    listed.write_text("current-context: [a]\n")
    path_list = tmp_path / "paths.yaml"
    path_list.write_text("current-context: c\ncontexts: [{name: c, context: {cluster: c}}]\n"
                         "clusters: [{name: c, cluster: {server: 'https://h', "
                         "certificate-authority: [1]}}]\n")
    assert "nested too deeply" in assert_one_line(*cli("run", str(deep), home=tmp_path))
    assert "not UTF-8" in assert_one_line(*cli("run", str(latin), home=tmp_path))
    line = assert_one_line(*cli("run", "density", "--set", "qps\n2", home=tmp_path))
    assert "--set qps\\n2: expected NAME=VALUE" in line
    for config, says in ((deep, "nested too deeply"), (latin, "not UTF-8"),
                         (listed, "current-context is not a string"),
                         (path_list, "certificate-authority is not a string")):
        line = assert_one_line(*cli("hollow", "--kubeconfig", str(config), "--nodes", "1",
                                    "--no-kubelet-api", home=tmp_path))
        assert says in line, line
