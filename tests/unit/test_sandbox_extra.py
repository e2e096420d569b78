"""The drill estate is an extra: a production install runs without it, and says so when asked for it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
ESTATE = {"moto", "kmock", "pytest-httpserver"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Runs the CLI as if the sandbox extra were not installed: importing its modules fails.
WITHOUT_EXTRA = """
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("moto", "kmock", "pytest_httpserver"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from workers.cli import app
app(sys.argv[1:], prog_name="suture")
"""


def names(requirements: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in requirements}


def test_a_production_install_does_not_pull_the_drill_estate() -> None:
    assert names(PROJECT["dependencies"]) & ESTATE == set()


def test_the_sandbox_extra_brings_the_drill_estate() -> None:
    assert names(PROJECT["optional-dependencies"]["sandbox"]) >= ESTATE


@pytest.mark.parametrize(
    "command", [["demo"], ["drill", "--list"], ["bench", "latency"], ["up", "--sandbox"]], ids=" ".join
)
def test_a_sandbox_command_without_the_extra_says_how_to_install_it(
    command: list[str], tmp_path: Path
) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA, *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SUTURE_STATE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
        timeout=60,
    )

    assert ran.returncode == 2, ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert "the drill sandbox needs the sandbox extra: pip install 'suture[sandbox]'" in line


def test_the_product_loads_no_sandbox_module_to_run_suture_up() -> None:
    probe = (
        "import sys\n"
        "import workers.cli, workers.runtime, workers.embedded, workers.providers\n"
        "from workers.embedded import EmbeddedStack\n"
        "EmbeddedStack(__import__('pathlib').Path('unused'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sandbox', 'moto', 'kmock', 'pytest_httpserver')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]"
