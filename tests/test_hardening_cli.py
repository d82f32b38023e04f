"""Every CLI verb under bad numbers, and the usage errors a careless user makes: one clear line, exit 2, no traceback.

The sweep parses (never runs) each verb with each numeric option set to a missing, non-numeric, negative, zero,
huge, NaN or infinite value; a value outside the option's declared range must be refused naming that option.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import typer
import typer.main

from metabonk.cli import app
from metabonk.cli.limits import NumericParam, numeric_params
from tests.hardening_helpers import assert_one_line_error, run_cli

PARAMS = list(numeric_params(app))
BAD_VALUES = ["abc", "1e23", "-1", "-3", "0", "1" + "0" * 30, "nan", "inf", "-inf", "", None]  # None: no value


def _leaf(verb: str) -> typer.core.TyperCommand:  # type: ignore[name-defined]
    cmd = typer.main.get_command(app)
    for word in verb.split():
        cmd = cmd.commands[word]  # type: ignore[attr-defined]
    return cmd  # type: ignore[return-value]


def _argv(leaf: object, p: NumericParam, value: str | None) -> tuple[list[str], str]:
    """Command line setting only `p` (placeholders for positional arguments before it), and its display name."""
    args: list[str] = []
    for param in leaf.params:  # type: ignore[attr-defined]
        if param.name == p.name:
            if param.param_type_name == "argument":
                return [*args, value if value is not None else ""], p.name
            return [*args, param.opts[0], *([] if value is None else [value])], param.opts[0]
        if param.param_type_name == "argument" and param.required:
            args.append("1")
    raise AssertionError(f"{p.verb}: no click parameter {p.name}")


def _in_range(p: NumericParam, value: str | None) -> bool:
    try:
        x = p.kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return not math.isnan(x) and p.info.min <= x <= p.info.max  # type: ignore[operator]


def test_every_numeric_option_has_a_finite_range() -> None:
    assert len(PARAMS) > 80  # the sweep below really covers the CLI
    missing = [f"{p.verb} --{p.name}" for p in PARAMS if p.info.min is None or p.info.max is None]
    assert not missing, f"numeric options without a range (add them to cli/limits.py LIMITS): {missing}"


@pytest.mark.parametrize("p", PARAMS, ids=[f"{p.verb}:{p.name}" for p in PARAMS])
def test_sweep_bad_numbers_are_usage_errors(p: NumericParam) -> None:
    leaf = _leaf(p.verb)
    for value in BAD_VALUES:
        args, shown = _argv(leaf, p, value)
        try:
            leaf.make_context(p.verb, list(args))  # parse and validate only: nothing runs
        except typer.TyperException as e:  # the usage errors of typer's click: shown as one line
            message = e.format_message()
            names_it = (shown in message or getattr(getattr(e, "param", None), "name", None) == p.name
                        or (shown == p.name and str(value).startswith("-") and "No such option" in message))
            if not _in_range(p, value):
                assert names_it, f"{p.verb} {args}: refused for another reason: {message}"
            continue
        assert _in_range(p, value), f"{p.verb} {args}: {value!r} accepted outside [{p.info.min}, {p.info.max}]"


@pytest.mark.parametrize(("args", "words"), [
    ([], "Usage: metabonk"),
    (["record", "arena"], "Missing option '--out'"),
    (["record", "arena", "--out", "x", "--episodes", "abc"], "Invalid value for '--episodes'"),
    (["nosuchverb"], "No such command 'nosuchverb'"),
    (["train"], "Usage: metabonk train"),
    (["record", "arena", "--out", "x", "--seed", "-1"], "Invalid value for '--seed'"),
    (["record", "arena", "--out", "x", "--seed", "1e23"], "Invalid value for '--seed'"),
    (["record", "arena", "--out", "x", "--num-envs", "100000000"], "Invalid value for '--num-envs'"),
    (["train", "idm", "--data", "S", "--out", "o", "--lr", "nan"], "Invalid value for '--lr'"),
    (["train", "lam", "--data", "S", "--out", "o", "--codes", "-3"], "Invalid value for '--codes'"),
    (["train", "lam", "--data", "S", "--out", "o", "--width", "0"], "Invalid value for '--width'"),
    (["train", "lam", "--data", "S", "--out", "o", "--batch", "100000000"], "Invalid value for '--batch'"),
    (["data", "export", "S", "0", "--out", "x.mp4", "--scale", "100000"], "Invalid value for '--scale'"),
    (["serve-env", "--port", "0", "--idle-timeout", "0"], "Invalid value for '--idle-timeout'"),
    (["serve-env", "--port", "0", "--max-clients", "-3"], "Invalid value for '--max-clients'"),
    (["serve-llm", "--port", "99999", "--dry-run"], "Invalid value for '--port'"),
])
def test_usage_errors_through_the_entry_point(args: list[str], words: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = run_cli(args)
    assert code == 2, text
    assert_one_line_error(code, text, words)
    assert not list(tmp_path.iterdir()), "a refused command wrote something"


def test_refused_runs_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["record", "arena", "--out", "store", "--max-steps", "0"],
                 ["train", "policy", "--out", "pol", "--steps", "0"]):
        code, text = run_cli(args)
        assert_one_line_error(code, text, "Invalid value")
    assert not list(tmp_path.iterdir())


def test_eval_json_to_a_directory_is_refused_before_evaluating(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    code, text = run_cli(["eval", "idm", str(tmp_path / "nockpt"), "--json", str(tmp_path / "d")])
    assert_one_line_error(code, text, "is a directory")
