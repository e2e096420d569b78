"""People's names are validated identifiers, refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from suture.people import InvalidName, PersonName, is_person_name, person_name
from workers.cli import app

runner = CliRunner()
HOSTILE = 'Robert"); DROP TABLE runs;--'


@pytest.mark.parametrize("name", ["alice", "oncall-alice", "secops.bob_2", "alice@example.com", "7"])
def test_names_in_the_documented_alphabet_are_accepted_unchanged(name: str) -> None:
    assert person_name(name) == name
    assert is_person_name(name)


@pytest.mark.parametrize(
    "name",
    [
        HOSTILE,
        "",
        "bob smith",
        "-alice",
        ".alice",
        "alice\n",
        "al\x00ice",
        "ålice",
        "alice[red]",
        "a" * 65,
    ],
)
def test_names_outside_the_alphabet_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match="not a valid name"):
        person_name(name)
    assert not is_person_name(name)


def test_an_uppercase_name_is_refused_with_the_lowercase_suggestion() -> None:
    with pytest.raises(InvalidName, match="did you mean 'alice'"):
        person_name("Alice")


def test_nobody_may_act_under_the_name_suture_records_its_own_steps_under() -> None:
    with pytest.raises(InvalidName, match="reserved"):
        person_name("suture")


def test_a_model_field_of_person_names_refuses_a_hostile_one() -> None:
    class Answer(BaseModel):
        approver: PersonName

    assert Answer(approver="oncall-alice").approver == "oncall-alice"
    with pytest.raises(ValidationError, match="not a valid name"):
        Answer(approver=HOSTILE)
    assert not is_person_name(None)


@pytest.mark.parametrize(
    "command",
    [
        ["resume", "--as", HOSTILE],
        ["pause", "security", "--as", HOSTILE],
        ["unlock", "shop/checkout", "--as", HOSTILE],
        ["approve", "reliability-abc-1", "--as", HOSTILE],
        ["reject", "reliability-abc-1", "--as", HOSTILE],
        ["undo", "reliability-abc-1", "--as", HOSTILE],
    ],
    ids=lambda command: command[0],
)
def test_a_hostile_name_is_refused_in_one_line_before_the_store_is_opened(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "suture.db"
    monkeypatch.setenv("SUTURE_DB_URL", f"sqlite:///{database}")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")  # nothing listens: nothing may be asked
    result = runner.invoke(app, command, terminal_width=300)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --as:"), result.output
    assert not database.exists()
