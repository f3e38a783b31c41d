"""One real control plane per test session, started and stopped with the real CLI.

Every test that touches wire behaviour talks to this cluster: etcd, kube-apiserver,
kube-scheduler and kube-controller-manager 1.20 built from Debian's source package.
State lives in a temporary directory so tests never meet a user's own clusters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import Cluster, run_cli


def pytest_configure(config: pytest.Config) -> None:
    if "PYKUBEMARK_STATE" not in os.environ:
        import tempfile

        os.environ["PYKUBEMARK_STATE"] = tempfile.mkdtemp(prefix="pykubemark-test-state-")


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
    run_cli("up", "--name", name, "--audit",
            "--controller-manager-arg=--kube-api-qps=20",
            "--controller-manager-arg=--kube-api-burst=30",
            "--scheduler-arg=--kube-api-qps=50", "--scheduler-arg=--kube-api-burst=100")
    try:
        yield Cluster(name)
    finally:
        run_cli("down", "--name", name, check=False)
