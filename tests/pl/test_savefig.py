import inspect
import subprocess
import sys
from pathlib import Path

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


# every figure function of mt.pl, called on the shared outputs (a new one must be added here)
NOT_FIGURES = {"savefig": "writes figures itself", "explore": "an ipywidgets app, not a figure"}
CALLS = {
    "age_acceleration": lambda o, p: mt.pl.age_acceleration(o.adata, show=False, save=p),
    "attention_genes": lambda o, p: mt.pl.attention_genes(o.adata, show=False, save=p),
    "attention_heads": lambda o, p: mt.pl.attention_heads(o.adata, show=False, save=p),
    "evaluation": lambda o, p: mt.pl.evaluation(o.evaluation, show=False, save=p),
    "generated_vs_real": lambda o, p: mt.pl.generated_vs_real(
        o.adata, o.generated, basis="pca", n_real=100, show=False, save=p
    ),
    "perturb": lambda o, p: mt.pl.perturb(o.perturbed, show=False, save=p),
    "predicted_age": lambda o, p: mt.pl.predicted_age(o.adata, show=False, save=p),
    "training_curves": lambda o, p: mt.pl.training_curves(o.history, show=False, save=p),
    "trajectory": lambda o, p: mt.pl.trajectory(o.adata, o.prompts, show=False, save=p),
}
FIGURES = sorted(set(mt.pl.__all__) - set(NOT_FIGURES))


@pytest.fixture
def figdir(tmp_path, monkeypatch):
    monkeypatch.setattr(mt.settings, "figdir", tmp_path / "figures")
    return tmp_path / "figures"


@pytest.mark.parametrize("name", FIGURES)
def test_save_writes_into_figdir(name, out, perturbed, figdir):
    """``save=True`` writes ``<name>.png``, a file name its format, into ``mt.settings.figdir``."""
    assert name in CALLS, f"add mt.pl.{name} to CALLS (every figure function takes save=)"
    params = inspect.signature(getattr(mt.pl, name)).parameters
    assert params["save"].kind is params["save"].KEYWORD_ONLY and params["save"].default is None
    o = type(out)(**vars(out), perturbed=perturbed)
    drawn = CALLS[name](o, True)
    png = figdir / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn is not None  # show=False still returns what was drawn
    CALLS[name](o, f"{name}_custom.pdf")
    assert (figdir / f"{name}_custom.pdf").read_bytes()[:5] == b"%PDF-"
    CALLS[name](o, "no_suffix")
    assert (figdir / "no_suffix.png").is_file()
    assert sorted(p.name for p in figdir.iterdir()) == sorted(
        [f"{name}.png", f"{name}_custom.pdf", "no_suffix.png"]
    )


def test_no_file_without_save(out, figdir):
    mt.pl.predicted_age(out.adata, show=False)
    mt.pl.predicted_age(out.adata, show=False, save=False)
    assert not figdir.exists()


def test_save_happens_before_show(out, figdir, monkeypatch):
    """``show=True`` closes the figure on inline backends: it is written first."""
    import matplotlib.pyplot as plt

    seen = []
    monkeypatch.setattr(plt, "show", lambda: seen.append(sorted(Path(figdir).iterdir())))
    assert mt.pl.predicted_age(out.adata, show=True, save="shown.svg") is None
    assert seen == [[figdir / "shown.svg"]]
