"""The docs are self-contained and match the code: links, settings, env vars, commands."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest

from nimbus import config
from nimbus.cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repo(doc):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        assert path.exists(), f"{doc.name}: link to missing {target}"
        assert path.is_relative_to(REPO), f"{doc.name}: {target} points outside the repo"
        if anchor and path.suffix == ".md":
            headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}
            assert anchor in headings, f"{doc.name}: no heading #{anchor} in {path.name}"


def test_nothing_points_outside_the_repository():
    offenders = []
    for path in [*DOCS, *(REPO / "nimbus").rglob("*.py"), *(REPO / "tests").rglob("*.py")]:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for needle in ("../shared", "/work/shared", "shared/DESIGN", "CONVENTIONS.md",
                       "DESIGN.md", "DESIGN §"):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert offenders == []


@pytest.mark.parametrize("cls", [config.ServerConfig, config.AgentConfig])
def test_every_setting_is_in_the_configuration_reference(cls):
    reference = (REPO / "docs" / "configuration.md").read_text()
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    missing = [f.name for f in dataclasses.fields(cls)
               if not any(f"`{f.name}`" in row.split("|")[1] for row in rows)]
    assert missing == [], f"add {missing} to docs/configuration.md"


def test_every_environment_variable_is_documented():
    reference = (REPO / "docs" / "configuration.md").read_text()
    used = set()
    for path in (REPO / "nimbus").rglob("*.py"):
        used |= set(re.findall(r"\bNIMBUS_[A-Z_]+\b", path.read_text()))
    assert sorted(v for v in used if f"`{v}`" not in reference) == []


def _commands_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Commands", 1)[1]
    return section.split("```", 2)[1]


def test_readme_lists_every_command_and_subcommand():
    block = _commands_block()
    missing = []
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        if f"nimbus {name}" not in block:
            missing.append(name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(click.Context(command)):
                line = next((ln for ln in block.splitlines()
                             if ln.startswith(f"nimbus {name} ")), None)
                lines = [ln for ln in block.splitlines() if f"nimbus {name}" in ln]
                if line is None or not any(re.search(rf"(^|[ |]){sub}\b", ln) for ln in lines):
                    missing.append(f"{name} {sub}")
    assert missing == []


def test_readme_lists_every_option_of_the_lab_and_install_commands():
    block = _commands_block()
    for group, sub in (("lab", "up"), ("serve", "install"), ("agent", "install")):
        noun = cli.get_command(click.Context(cli), group)
        command = noun.get_command(click.Context(noun), sub)
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in block, f"README lacks `nimbus {group} {sub} {opt}`"
    assert "--id" in block and "--no-save" in (REPO / "README.md").read_text()
