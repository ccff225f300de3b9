"""Plotting: figures of :mod:`maxtoki.tl` results in scanpy's conventions."""
