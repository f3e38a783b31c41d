"""pykubemark: kubemark in Python — hollow nodes against a real Kubernetes control plane."""

__version__ = "0.1.0"
