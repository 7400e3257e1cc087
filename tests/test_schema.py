"""benchmark/schema.py: the one number check every schema uses, against explicit cases."""

import math
import re

import pytest

from benchmark.errors import NFBenchError
from benchmark.schema import describe_number, is_number, known_keys, number, sub


@pytest.mark.parametrize("value, bounds, ok", [
    (1, {}, True), (-2.5, {}, True), (True, {}, False), (False, {"integer": True}, False),
    (math.nan, {}, False), (math.inf, {}, False), (-math.inf, {}, False), ("1", {}, False), (None, {}, False),
    (math.inf, {"finite": False}, True), (math.nan, {"finite": False}, False),
    (0, {"low": 0}, True), (0, {"low": 0, "open_low": True}, False), (1e-300, {"low": 0, "open_low": True}, True),
    (1, {"low": 0, "high": 1}, True), (1, {"low": 0, "high": 1, "open_high": True}, False),
    (1.0000001, {"high": 1}, False), (-1e-9, {"low": 0}, False),
    (3, {"integer": True}, True), (3.0, {"integer": True}, False), (99, {"low": 100, "integer": True}, False),
])
def test_is_number(value, bounds, ok):
    assert is_number(value, **bounds) is ok


def test_number_returns_the_value_and_names_the_key_path_and_the_range():
    assert number(3, "f: a") == 3.0 and isinstance(number(3, "f: a"), float)
    assert number(3, "f: a", integer=True) == 3 and isinstance(number(3, "f: a", integer=True), int)
    cases = [({}, "a number"), ({"integer": True}, "an integer"), ({"low": 0}, "a number ≥ 0"),
             ({"low": 0, "open_low": True}, "a positive number"), ({"low": 1, "integer": True}, "a positive integer"),
             ({"low": 100, "integer": True}, "an integer ≥ 100"), ({"low": 0, "high": 1}, "a number in [0, 1]"),
             ({"low": 0, "high": 1, "open_low": True, "open_high": True}, "a number in (0, 1)"),
             ({"high": 1, "open_high": True}, "a number < 1")]
    for bounds, words in cases:
        assert describe_number(**bounds) == words
        with pytest.raises(NFBenchError, match=rf"^f: a\.b: must be {re.escape(words)}, got True$"):
            number(True, "f: a.b", **bounds)
    with pytest.raises(NFBenchError, match=r"^f: x: expected a count \(of things\), got nan$"):
        number(math.nan, "f: x", valid="a count (of things)", verb="expected")


def test_known_keys_reports_at_the_mapping_or_at_the_key():
    with pytest.raises(NFBenchError, match=r"^f: unknown field 'nam'; did you mean 'name'"):
        known_keys({"nam": 1}, ["name"], "f", "field")
    with pytest.raises(NFBenchError, match=r"^f: a.nam: unknown key 'nam'"):
        known_keys({"nam": 1}, ["name"], "f: a", at_key=True)
    assert sub("f", "k") == "f: k" and sub("f: a", "k") == "f: a.k"
