"""What a result was computed with: package versions, the CPU and torch's kernels (private)."""

from __future__ import annotations

import platform
from importlib import metadata

#: Distributions reported by :func:`versions`, beside Python, the machine and torch's details.
PACKAGES = (
    "maxtoki",
    "torch",
    "flash-attn",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scikit-learn",
    "numba",
    "scanpy",
    "mudata",
)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape a result, and how torch computes.

    Every value is a string; a package that is not installed reads ``"not installed"``. Beside
    :data:`PACKAGES`: ``python``, ``platform``, ``cpu`` (the processor's model name where the
    system tells it), ``torch cpu kernels`` (the instruction set of torch's CPU kernels, e.g.
    ``AVX512``; the same seed trains another model with other kernels, docs/benchmarks.md),
    ``torch threads`` and ``cuda`` (the GPU's name and CUDA version, or ``"not available"``).
    """
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    import torch  # a dependency; imported here, not when maxtoki is

    out["torch cpu kernels"] = torch.backends.cpu.get_cpu_capability()
    out["torch threads"] = str(torch.get_num_threads())
    out["cuda"] = (
        f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
        if torch.cuda.is_available()
        else "not available"
    )
    return out


def _cpu() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
