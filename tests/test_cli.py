"""The ``occlufer`` command ends a fault in one line."""

from __future__ import annotations

import argparse

import pytest

from occlufer import cli


def test_ctrl_c_in_a_command_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    def interrupted(args: argparse.Namespace) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_check", interrupted)
    assert cli.main(["check"]) == 130
    assert capsys.readouterr().err == "occlufer check: interrupted\n"


def test_an_expected_error_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert cli.main(["check", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("occlufer check: error: ") and err.count("\n") == 1


def test_other_exceptions_are_not_swallowed(monkeypatch) -> None:
    def bug(args: argparse.Namespace) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(cli, "_check", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["check"])
