"""What the integration tests share: the CLI, kubectl on the session cluster, waiting."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLI = [sys.executable, "-m", "pykubemark"]


def run_cli(*args: str, check: bool = True, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"pykubemark {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Cluster:
    name: str

    @property
    def state(self):
        from pykubemark.cluster.state import load

        return load(self.name)

    @property
    def local(self):
        from pykubemark.cluster.control_plane import LocalCluster

        return LocalCluster.load(self.name)

    @property
    def kubeconfig(self) -> str:
        return self.state.kubeconfig

    @property
    def audit_log(self) -> Path:
        return self.local.dir / "logs" / "audit.log"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        from pykubemark.provision import find_binaries

        binaries = find_binaries(None)
        assert binaries is not None and binaries.kubectl is not None
        result = subprocess.run([str(binaries.kubectl), "--kubeconfig", self.kubeconfig, *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


def wait_for(what: str, check: Callable[[], object], timeout: float = 120,
             interval: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


