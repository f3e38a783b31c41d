"""One real control plane per test process, started and stopped with the real CLI.

Every test that touches wire behaviour talks to this cluster: etcd, kube-apiserver,
kube-scheduler and kube-controller-manager of the default release. State lives in a
temporary directory so tests never meet a user's own clusters.

Under pytest-xdist (`make test` runs two workers) each worker has a cluster of its own,
and a file's tests stay on one worker, in file order: its module fixtures (a fleet, a
cluster of its own) and its checks that nothing of its clusters is left are the file's.
Only tests that share nothing, the benchmarks' tiny runs, are spread one by one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Cluster, run_cli


def pytest_configure(config: pytest.Config) -> None:
    if "PYKUBEMARK_STATE" not in os.environ:
        import tempfile

        os.environ["PYKUBEMARK_STATE"] = tempfile.mkdtemp(prefix="pykubemark-test-state-")
        config.stash[OWN_STATE] = Path(os.environ["PYKUBEMARK_STATE"])


#: The state directory this session made (not a user's PYKUBEMARK_STATE).
OWN_STATE = pytest.StashKey[Path]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing session's state goes: an integration run leaves gigabytes there (etcd
    data, logs, run directories), and /tmp filled up run after run. A failing session's
    stays, for its logs, and says where."""
    state = session.config.stash.get(OWN_STATE, None)
    if state is None or hasattr(session.config, "workerinput"):
        return
    mounted = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
               if line.split()[1].startswith(f"{state}/")]
    if exitstatus == 0 and not mounted:
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    elif any(state.iterdir()):
        print(f"\nthe tests' clusters, logs and runs are kept in {state}")


#: Files whose tests share nothing but the session cluster: each test is its own unit.
SPREAD = {"test_benchmarks.py"}
#: The longest files, handed out first (with `--no-loadscope-reorder`) so that no
#: worker starts one of them while the other is nearly done.
LONGEST = ("test_ab.py", "test_hollow.py", "test_benchmarks.py")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, but the files in SPREAD give each test its own unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if Path(path).name in SPREAD else path

    return Scheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: LONGEST.index(item.path.name)
               if item.path.name in LONGEST else len(LONGEST))


@pytest.fixture(scope="session")
def binaries():
    """Provisioned exactly as `make test` does (a no-op when the cache is warm)."""
    run_cli("provision", timeout=3600)
    from pykubemark.provision import find_binaries

    found = find_binaries(None)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def cluster(binaries) -> Iterator[Cluster]:
    # The controller-manager's and scheduler's own default client budgets, as when the
    # reference was measured: how fast pods reach a kubelet decides how much its status
    # manager coalesces, so the per-pod request counts compare only at the same pace.
    # PYKUBEMARK_TEST_CLUSTER: another name, when several checkouts share a machine
    name = os.environ.get("PYKUBEMARK_TEST_CLUSTER", "test")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        name = f"{name}-{worker}"
    run_cli("up", "--name", name, "--audit",
            "--controller-manager-arg=--kube-api-qps=20",
            "--controller-manager-arg=--kube-api-burst=30",
            "--scheduler-arg=--kube-api-qps=50", "--scheduler-arg=--kube-api-burst=100")
    try:
        yield Cluster(name)
    finally:
        run_cli("down", "--name", name, check=False)
