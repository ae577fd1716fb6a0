"""Every command answers ``--help`` (exit 0) and its help names the command's main option."""

from __future__ import annotations

import pytest
import typer

from tomopick.cli.main import app, main

#: command words → the option (or argument) a user reaches for first
MAIN_OPTION = {
    ("particles",): "preset",  # its argument
    ("convert",): "--format-out",
    ("info",): "--tomo-shape",
    ("simulate",): "--imaging",
    ("train",): "--resume",
    ("search",): "--trials",
    ("pick",): "--model",
    ("segment",): "--only",
    ("calibrate",): "--truth",
    ("finetune",): "--freeze-encoder",
    ("evaluate",): "--picks",
    ("report",): "--truth",
    ("demo",): "--n-train",
    ("average",): "--particle",
    ("match",): "--template",
    ("prompt", "extract"): "--at",
    ("prompt", "train"): "--device",
}


def _commands(group, prefix=()) -> list[tuple[str, ...]]:
    found = []
    for name, sub in group.commands.items():
        found += _commands(sub, (*prefix, name)) if hasattr(sub, "commands") else [(*prefix, name)]
    return found


def test_every_command_has_a_help_case():
    assert sorted(_commands(typer.main.get_command(app))) == sorted(MAIN_OPTION)


@pytest.mark.parametrize("words", sorted(MAIN_OPTION), ids=" ".join)
def test_help_exits_0_and_names_the_main_option(words, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich would shorten option names to fit a narrow terminal
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert f"Usage: tomopick {' '.join(words)}" in " ".join(out.split())
    assert MAIN_OPTION[words] in out
