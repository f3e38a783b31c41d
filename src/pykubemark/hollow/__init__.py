"""Hollow nodes: a kubelet and a kube-proxy per node that start no containers."""
