"""The README's Quickstart is what CI runs, so a green CI proves it works; the documented
configuration is the real one; every link between the documents leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quickstart_has_exactly_two_commands_demo_then_tests():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert commands[0].endswith("parcelwatch demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_second_quickstart_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quickstart_commands()[1] in ci


def test_the_configuration_block_lists_every_key_with_its_default():
    import tomllib

    import msgspec

    from flows.config import Settings

    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1]
    block = re.search(r"```toml\n(.+?)\n```", section, re.S).group(1)
    documented = tomllib.loads(block)
    assert documented == msgspec.json.decode(msgspec.json.encode(Settings()))  # tuples: lists


def test_every_relative_link_in_the_documents_leads_to_a_file():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                 ROOT / "benchmarks" / "RESULTS.md"]
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (document.parent / target).exists(), (document.name, target)
