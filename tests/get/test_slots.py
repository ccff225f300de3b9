"""The mt.get accessors read the slots the `_keys` rule names, by default."""

import inspect

import pytest

import maxtoki as mt
from maxtoki._keys import DEFAULT_KEY, SLOTS, TOKENS_KEY, slot


@pytest.mark.parametrize(
    ("accessor", "param", "name", "tool"),
    [
        ("age_acceleration", "key", "age_acceleration", "mt.tl.age_acceleration"),
        ("attention_heads", "key", "attention", "mt.tl.attention"),
        ("evaluate", "key", "evaluate", "mt.tl.evaluate"),
        ("perturb", "key", "perturb", "mt.tl.perturb"),
        ("tokens", "tokens_key", "tokens", "mt.pp.tokenize"),
    ],
)
def test_defaults_follow_the_slot_rule(accessor, param, name, tool):
    default = inspect.signature(getattr(mt.get, accessor)).parameters[param].default
    assert default == slot(DEFAULT_KEY, name)
    written = {pattern.format(k=DEFAULT_KEY) for _, pattern in SLOTS[tool]}
    assert default in written


def test_tokens_default_is_the_tokens_key():
    assert inspect.signature(mt.get.tokens).parameters["tokens_key"].default == TOKENS_KEY
