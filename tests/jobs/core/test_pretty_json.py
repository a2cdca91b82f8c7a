"""``pretty_json`` writes exactly the bytes of ``json.dumps(sort_keys=True, indent=2, ensure_ascii=False)`` and a
newline, for every JSON value (its fast path) and for what only ``json`` handles (its fallback)."""

from __future__ import annotations

import enum
import json
import random

import pytest

from jobs.core.hashing import pretty_json


def _reference(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


_TEXTS = ["", "a", "é", "日本", 'quote"back\\slash', "new\nline\ttab", "\x00\x1f", "\u2028", "emoji 🫁", "/"]


def _value(rng: random.Random, depth: int):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(_TEXTS) + str(rng.randrange(100))
    if kind == 1:
        return rng.randrange(-(10**20), 10**20)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e-300, 1.5, 1e22, 123456.789, rng.random(), -rng.random() * 1e10])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return rng.choice(_TEXTS)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {rng.choice(_TEXTS) + str(i): _value(rng, depth + 1) for i in range(rng.randrange(5))}


@pytest.mark.parametrize("seed", range(200))
def test_random_json_values_give_the_standard_librarys_bytes(seed):
    value = _value(random.Random(seed), 0)
    assert pretty_json(value) == _reference(value)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {"labels": ["a", "b"], "task": "classification", "train": [{"image": "x.png", "label": 0}], "val": []},
        {1: "int key", 2: "sorted"},
        {True: "bool key"},
        {"enum": Colour.RED, "sub": Name("str subclass")},
        [],
        {},
        "top-level text",
        3.0,
    ],
)
def test_values_only_json_handles_fall_back_to_it(value):
    assert pretty_json(value) == _reference(value)


@pytest.mark.parametrize("value", [float("nan"), {"x": [float("inf")]}])
def test_non_finite_floats_raise_as_json_does(value):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        pretty_json(value)


def test_a_circular_value_raises_as_json_does():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        pretty_json(loop)
