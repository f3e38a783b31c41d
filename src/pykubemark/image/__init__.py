"""The pykubemark container image, built from Debian packages and PyPI wheels only."""
