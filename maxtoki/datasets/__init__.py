"""Data sets: the simulated aging atlas embedded in the package."""

from ._aging_atlas import aging_atlas

__all__ = ["aging_atlas"]
