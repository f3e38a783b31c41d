"""The objects a scenario creates, as plain manifests.

Every object and pod carries the run's labels, so measurements select exactly this run's
pods and cleanup finds everything it made: ``pykubemark.io/run`` (the run id),
``pykubemark.io/group`` (pods measured together) and ``pykubemark.io/spec`` (the
scenario entry that made it). How hollow nodes play the pods is in their annotations
(`pykubemark.contract`; a real kubelet runs the container's command instead).
"""

from __future__ import annotations

from typing import Any

from pykubemark.contract import RUN_SECONDS_ANNOTATION

RUN_LABEL = "pykubemark.io/run"
GROUP_LABEL = "pykubemark.io/group"
SPEC_LABEL = "pykubemark.io/spec"
JOB_IMAGE = "registry.k8s.io/e2e-test-images/busybox:1.29-1"

API_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
}
#: What the pods of a Deployment with an HPA request: utilization needs a request.
HPA_CPU_REQUEST = "100m"
API_VERSIONS = {"Deployment": "apps/v1", "DaemonSet": "apps/v1", "Job": "batch/v1"}


def collection(kind: str, namespace: str) -> str:
    return API_PATHS[kind].format(ns=namespace)


def namespace(name: str, run_id: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {RUN_LABEL: run_id}}}


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": dict(labels)}


def pod_spec(name: str, image: str, *, config: bool, node_selector: dict[str, str],
             restart: str = "Always", run_seconds: float | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image}
    spec: dict[str, Any] = {"containers": [container], "restartPolicy": restart,
                            "terminationGracePeriodSeconds": 1}
    if run_seconds is not None:
        container["image"] = JOB_IMAGE
        container["command"] = ["sleep", str(int(run_seconds))]
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if config:
        spec["volumes"] = [{"name": "config", "configMap": {"name": name}},
                           {"name": "secret", "secret": {"secretName": name}}]
        container["volumeMounts"] = [{"name": "config", "mountPath": "/var/config"},
                                     {"name": "secret", "mountPath": "/var/secret"}]
    return spec


def workload(kind: str, name: str, *, replicas: int, labels: dict[str, str], image: str,
             config: bool, node_selector: dict[str, str],
             run_seconds: float | None = None,
             annotations: dict[str, str] | None = None,
             cpu_request: str | None = None) -> dict[str, Any]:
    """A Deployment, Job, DaemonSet or bare Pod whose pods carry ``labels`` (and
    ``annotations``: how hollow nodes play them)."""
    pod_labels = {**labels, "name": name}
    annotations = dict(annotations or {})
    if run_seconds is not None:
        annotations[RUN_SECONDS_ANNOTATION] = str(run_seconds)
    if kind == "Job":
        spec = pod_spec(name, image, config=config, node_selector=node_selector,
                        restart="Never", run_seconds=run_seconds)
    else:
        spec = pod_spec(name, image, config=config, node_selector=node_selector)
    if cpu_request:
        spec["containers"][0]["resources"] = {"requests": {"cpu": cpu_request}}
    template = {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": spec}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {**_meta(name, pod_labels), "annotations": annotations},
                "spec": spec}
    body: dict[str, Any] = {"apiVersion": API_VERSIONS[kind], "kind": kind,
                            "metadata": _meta(name, labels)}
    if kind == "Deployment":
        body["spec"] = {"replicas": replicas, "selector": {"matchLabels": {"name": name}},
                        "template": template}
    elif kind == "DaemonSet":
        body["spec"] = {"selector": {"matchLabels": {"name": name}}, "template": template}
    elif kind == "Job":
        body["spec"] = {"completions": replicas, "parallelism": replicas, "backoffLimit": 0,
                        "template": template}
    else:
        raise ValueError(f"{kind} has no pods")
    return body


def service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, labels),
            "spec": {"selector": {"name": name},
                     "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}


def hpa(name: str, labels: dict[str, str], *, replicas: int, target: int) -> dict[str, Any]:
    """An autoscaling/v2 HPA of Deployment ``name`` on CPU utilization."""
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, labels),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": name},
                     "minReplicas": max(1, replicas), "maxReplicas": max(2, 2 * replicas),
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": target}}}]}}


def config_map(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, labels),
            "data": {"data.yaml": f"a: 1\nb: 2\nc: {name}\n"}}


def secret(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, labels),
            "type": "Opaque", "stringData": {"password": f"secret-of-{name}"}}
