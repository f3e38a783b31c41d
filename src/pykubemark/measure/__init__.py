"""Measurements taken from the cluster itself (audit log, metrics), never from hollow nodes."""
