import inspect
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

import maxtoki as mt


def test_import_pl_is_light():
    code = (
        "import sys; import maxtoki; maxtoki.pl; "
        "print(*(m for m in ('matplotlib', 'seaborn', 'scanpy', 'ipywidgets', 'torch') "
        "if m in sys.modules), sep=',')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`maxtoki.pl` imported {out.stdout.strip()}"


def test_public_api_conventions():
    for name in mt.pl.__all__:
        fn = getattr(mt.pl, name)
        params = inspect.signature(fn).parameters
        assert "save" not in params, name
        positional = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert len(positional) <= 2, (name, positional)  # data arguments only
        if name not in ("savefig", "explore"):
            assert "show" in params and "ax" in params, name


def test_savefig_writes_into_figdir(tmp_path, monkeypatch):
    monkeypatch.setattr(mt.settings, "figdir", tmp_path / "figs" / "run1")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = mt.pl.savefig(ax, "line", dpi=50)
    assert path == tmp_path / "figs" / "run1" / "line.png"
    assert path.read_bytes()[:4] == b"\x89PNG"
    path = mt.pl.savefig(fig, "line.pdf", close=True)
    assert path.suffix == ".pdf" and path.stat().st_size > 0
    assert not plt.fignum_exists(fig.number)
    absolute = mt.pl.savefig(plt.subplots()[0], tmp_path / "elsewhere.svg")
    assert absolute == tmp_path / "elsewhere.svg" and absolute.is_file()
    with pytest.raises(TypeError, match="Figure or Axes"):
        mt.pl.savefig("not a figure", "x")
    plt.close("all")
