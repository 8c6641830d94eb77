"""The CLI explains itself: help for every option with its default, --version, -q anywhere,
and ``specray config --show`` with each setting's meaning (issue 14, item 2)."""

import argparse
import dataclasses
import json
import logging
from importlib import metadata

import pytest

from specray.cli import build_parser, main
from specray.config import DEMO_OVERRIDES, Config, field_docs, load_config


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_shows_its_default(name, capsys):
    parser = subcommands()[name]
    for action in parser._actions:
        assert action.help, f"specray {name} {action.option_strings or action.dest}: no help"
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        default = action.default
        if action.option_strings and default not in (None, False, argparse.SUPPRESS):
            assert f"default: {default}" in text, (name, action.dest)


def test_help_names_units_and_new_names(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(Angstrom)" in text and "--visits" in text and "mean observations per star" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"specray {metadata.version('specray')}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_works_before_or_after_the_subcommand(where, capsys):
    logging.getLogger().handlers.clear()  # basicConfig configures only an empty root
    args = ["config", "--show"]
    assert main(["-q", *args] if where == "before" else [*args, "-q"]) == 0
    assert logging.getLogger().level == logging.WARNING
    assert "train.epochs = " in capsys.readouterr().out
    logging.getLogger().handlers.clear()
    assert main(args) == 0 and logging.getLogger().level == logging.INFO
    logging.getLogger().handlers.clear()


def test_config_show_prints_every_setting_with_its_meaning(capsys):
    assert main(["config", "--show", "--set", "loss.beta=0.05", "--set", "train.epochs=7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    settings = {}
    for line, meaning in zip(lines, lines[1:], strict=False):
        if " = " in line and not line.startswith(" "):
            key, value = line.split(" = ", 1)
            settings[key] = json.loads(value)
            assert meaning.startswith("    ") and meaning.strip(), key
    expected = load_config(overrides=["loss.beta=0.05", "train.epochs=7"]).to_dict()
    flat = {f"{s}.{k}": v for s, values in expected.items() for k, v in values.items()}
    assert settings == flat
    assert settings["loss.beta"] == 0.05 and settings["train.epochs"] == 7


def test_config_show_demo_starts_from_the_demo_settings(capsys):
    assert main(["config", "--demo"]) == 0
    out = capsys.readouterr().out
    beta = next(item for item in DEMO_OVERRIDES if item.startswith("loss.beta="))
    assert f"loss.beta = {beta.split('=')[1]}" in out


def test_every_setting_is_documented():
    keys = {
        f"{section.name}.{item.name}"
        for section in dataclasses.fields(Config)
        for item in dataclasses.fields(getattr(Config(), section.name))
    }
    assert keys == set(field_docs())
