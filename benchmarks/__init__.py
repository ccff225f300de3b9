"""Benchmarks of maxtoki, each side by side with a baseline measured in the same run."""
