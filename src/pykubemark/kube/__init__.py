"""A thin asyncio Kubernetes client: kubeconfig, REST verbs, watches, rate limits."""

from pykubemark.kube.client import ApiError, Client
from pykubemark.kube.config import KubeConfig, load_kubeconfig

__all__ = ["ApiError", "Client", "KubeConfig", "load_kubeconfig"]
