"""The ``maxtoki`` command itself: help, ``python -m maxtoki``, defaults, documentation."""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import maxtoki as mt
from maxtoki._cli import VERBS, _parser, main

ROOT = Path(__file__).resolve().parents[2]


def _python_m(*argv, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "maxtoki", *map(str, argv)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_python_m_maxtoki_lists_every_verb():
    done = _python_m("--help")
    assert done.returncode == 0, done.stderr
    for verb in VERBS:
        assert f"    {verb} " in done.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: maxtoki {verb}")
    assert len(out.splitlines()) > 8


def test_python_m_runs_a_verb_end_to_end(cli, tmp_path):
    done = _python_m("--no-progress", "prompts", cli.store, "-o", "prompts.csv", "--groupby",
                     "cell_type", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 80 prompts to 'prompts.csv'" in done.stderr
    table = mt.train.read_prompts(tmp_path / "prompts.csv")
    assert set(table["query"]) <= set(cli.cells.obs_names)
    done = _python_m("predict", cli.store, "--model", cli.stage1_dir, "-o", tmp_path / "o")
    assert done.returncode == 1
    assert (
        done.stderr.strip().splitlines()[-1].startswith("maxtoki predict: error: the model")
        and "no time tokens" in done.stderr
    )
    assert "Traceback" not in done.stderr


def _subparser(verb: str) -> argparse.ArgumentParser:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb]


def _normal(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("verb", "functions"),
    [
        ("tokenize", ["pp.tokenize_corpus"]),
        ("prompts", ["pp.trajectories"]),
        ("predict", ["tl.predict_time", "tl.embed"]),
    ],
)
def test_options_mirror_the_python_api(verb, functions):
    """Every option named like a parameter of the function it calls has that default."""
    params = {}
    for name in functions:
        package, fn = name.split(".")
        params.update(inspect.signature(getattr(getattr(mt, package), fn)).parameters)
    paths = {"out_dir", "files", "input"}  # positional or required: no default to mirror
    matched = 0
    for action in _subparser(verb)._actions:
        dest = action.dest
        if dest not in params or dest in paths or params[dest].default is inspect.Parameter.empty:
            continue
        matched += 1
        api = params[dest].default
        cli = action.default
        if dest == "reference":
            api = [api]
        assert _normal(cli) == _normal(api), (verb, dest, cli, api)
    assert matched >= {"tokenize": 7, "prompts": 13, "predict": 16}[verb]


def test_every_verb_is_documented():
    readme = (ROOT / "README.md").read_text()
    api = (ROOT / "docs" / "api.md").read_text()
    for verb in VERBS:
        assert f"maxtoki {verb}" in readme, f"README.md: describe `maxtoki {verb}`"
        assert f"generated/cli_{verb}.txt" in api, f"docs/api.md: include the help of {verb}"
    assert "generated/cli_maxtoki.txt" in api


def test_the_docs_render_each_verb_s_help(tmp_path):
    """docs/conf.py writes the help text of every verb, the one api.md includes."""
    from maxtoki._cli_docs import write_cli_help

    assert "write_cli_help(" in (ROOT / "docs" / "conf.py").read_text()
    write_cli_help(tmp_path)
    for verb in VERBS:
        text = (tmp_path / f"cli_{verb}.txt").read_text()
        assert text.startswith(f"usage: maxtoki {verb}"), verb
    assert "tokenize" in (tmp_path / "cli_maxtoki.txt").read_text()
