"""`mt.logging.print_versions`: what a result was computed with."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch

import maxtoki as mt
from maxtoki import _versions


def test_versions_agree_with_the_packages_themselves():
    found = _versions.versions()
    assert set(_versions.PACKAGES) <= set(found)
    assert found["maxtoki"] == mt.__version__  # the installed metadata matches the code
    assert found["torch"] == torch.__version__
    assert found["numpy"] == np.__version__
    assert found["pandas"] == pd.__version__
    assert found["scikit-learn"] == sklearn.__version__
    assert found["torch cpu kernels"] == torch.backends.cpu.get_cpu_capability()
    assert found["cuda"] == "not available" or torch.cuda.is_available()
    assert found["cpu"] and found["python"].count(".") == 2
    assert all(isinstance(v, str) and v for v in found.values())


def test_versions_follow_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert _versions.versions()["torch threads"] == "1"
    finally:
        torch.set_num_threads(before)


def test_a_missing_package_reads_not_installed(monkeypatch):
    monkeypatch.setattr(_versions, "PACKAGES", ("numpy", "no-such-package-maxtoki"))
    found = _versions.versions()
    assert found["no-such-package-maxtoki"] == "not installed"
    assert found["numpy"] == np.__version__


@pytest.mark.parametrize("to_file", [False, True])
def test_print_versions_prints_one_aligned_line_each(capsys, to_file):
    buffer = io.StringIO()
    mt.logging.print_versions(file=buffer if to_file else None)
    text = buffer.getvalue() if to_file else capsys.readouterr().out
    lines = text.splitlines()
    found = _versions.versions()
    assert len(lines) == len(found)
    width = max(map(len, found))
    for line, (name, value) in zip(lines, found.items(), strict=True):
        assert line == f"{name:<{width}}  {value}"
