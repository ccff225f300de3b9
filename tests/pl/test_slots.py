"""The mt.pl functions read the slots the `_keys` rule names, by default."""

import inspect

import pytest

import maxtoki as mt
from maxtoki._keys import DEFAULT_KEY, PREDICTED_KEY, SLOTS, slot


@pytest.mark.parametrize(
    ("function", "param", "name", "tool"),
    [
        ("age_acceleration", "key", "age_acceleration", "mt.tl.age_acceleration"),
        ("attention_heads", "key", "attention", "mt.tl.attention"),
        ("attention_genes", "key", "attention", "mt.tl.attention"),
        ("evaluation", "key", "evaluate", "mt.tl.evaluate"),
        ("perturb", "key", "perturb", "mt.tl.perturb"),
        ("predicted_age", "predicted_key", "age", "mt.tl.predict_time"),
        ("trajectory", "predicted_key", "age", "mt.tl.predict_time"),
    ],
)
def test_defaults_follow_the_slot_rule(function, param, name, tool):
    default = inspect.signature(getattr(mt.pl, function)).parameters[param].default
    assert default == slot(DEFAULT_KEY, name)
    written = {pattern.format(k=DEFAULT_KEY) for _, pattern in SLOTS[tool]}
    assert default in written
    if name == "age":
        assert default == PREDICTED_KEY
