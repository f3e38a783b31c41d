"""Hollow-node engines other than pykubemark's own (``hollow/``).

The Go kubemark is the reference pykubemark is calibrated against; running it behind
the same commands (`hollow --engine kubemark`, `up --engine kubemark`) lets a user
measure both on their own control plane instead of trusting our numbers.
"""

ENGINES = ("pykubemark", "kubemark")
