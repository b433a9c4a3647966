"""Compose variable substitution and dotenv parsing (docker/envsubst.py)."""

from __future__ import annotations

import pytest

from nimbus.docker.envsubst import (
    EnvError,
    check_env,
    interpolate,
    parse_assignment,
    parse_dotenv,
    redact,
    substitute,
)

ENV = {"A": "x", "EMPTY": "", "PW": "p$ss"}


@pytest.mark.parametrize("text, want", [
    ("$A-${A}", "x-x"), ("$$A", "$A"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
    ("${NOPE-d}", "d"), ("${NOPE:-${A}y}", "xy"), ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"), ("${A:?boom}", "x"), ("no vars", "no vars"), ("${PW}", "p$ss"),
])
def test_substitute_follows_compose(text, want):
    assert substitute(text, ENV) == want


@pytest.mark.parametrize("text, error", [
    ("${NOPE}", "NOPE"), ("$NOPE", "NOPE"), ("${EMPTY:?must be set}", "must be set"),
    ("${A", "not closed"), ("cost $5", "literal"), ("${A%x}", "modifier"), ("${}", "name"),
])
def test_bad_or_missing_variables_are_one_line_errors(text, error):
    with pytest.raises(EnvError, match=error):
        substitute(text, ENV)


def test_interpolate_names_every_missing_key_and_escapes_for_docker():
    compose = {"services": {"a": {"image": "${IMG}", "command": ["${A}", "$$x", "${PW}"],
                                  "deploy": {"replicas": 2}}}}
    with pytest.raises(EnvError, match="IMG"):
        interpolate(compose, ENV)
    out = interpolate(compose, {**ENV, "IMG": "busybox"})
    assert out["services"]["a"]["command"] == ["x", "$$x", "p$$ss"]
    assert out["services"]["a"]["deploy"]["replicas"] == 2 and compose["services"]["a"][
        "image"] == "${IMG}"  # the original is untouched


def test_errors_never_show_a_value():
    with pytest.raises(EnvError) as err:
        parse_assignment("hunter2-no-equals")
    assert "hunter2" not in str(err.value)
    with pytest.raises(EnvError, match="'1A'"):
        parse_assignment("1A=secret")
    with pytest.raises(EnvError) as err:
        check_env({"K": "x" * 70000})
    assert "xxxx" not in str(err.value)


def test_dotenv():
    text = ("# comment\nexport A=1\nB = two words # note\nC='lit $x # y'\nD=\"a\\nb\"\n\n"
            "E=\n")
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "lit $x # y", "D": "a\nb",
                                  "E": ""}
    with pytest.raises(EnvError, match="line 2"):
        parse_dotenv("A=1\nnot an assignment\n")


def test_redact_masks_values():
    assert redact("bad p$ss and x", ENV) == "bad *** and x"  # short values are left alone
