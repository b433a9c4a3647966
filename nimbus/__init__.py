"""Nimbus: a self-hosted cloud for bare metal, shipped as one file."""

__version__ = "0.1.0"
