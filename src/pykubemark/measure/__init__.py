"""Measurements taken from the cluster itself (audit log, metrics), never from hollow nodes."""

from pykubemark.measure.api_responsiveness import ApiResponsiveness
from pykubemark.measure.base import Context, Measurement, MeasurementError, Slo
from pykubemark.measure.etcd import EtcdMetrics
from pykubemark.measure.nodes import NodeReadiness
from pykubemark.measure.pod_startup import PodStartupLatency
from pykubemark.measure.resources import ResourceUsage
from pykubemark.measure.scheduling import SchedulingThroughput

__all__ = [
    "ApiResponsiveness",
    "Context",
    "EtcdMetrics",
    "Measurement",
    "MeasurementError",
    "NodeReadiness",
    "PodStartupLatency",
    "ResourceUsage",
    "SchedulingThroughput",
    "Slo",
]
