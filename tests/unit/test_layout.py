"""The layering rules the design depends on."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The same list as the import-linter contract on workflows (pyproject.toml); these tests
# also catch an import made at run time, which a static contract cannot see.
IO_CLIENTS = (
    "boto3",
    "botocore",
    "kubernetes",
    "sqlalchemy",
    "httpx",
    "fastapi",
    "uvicorn",
    "prometheus_api_client",
    "requests",
    "confluent_kafka",
)


def test_workflow_modules_import_no_io_client_directly() -> None:
    offenders = []
    for path in sorted((ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in IO_CLIENTS]
    assert offenders == []


def test_importing_every_workflow_pulls_in_no_io_client() -> None:
    modules = sorted(
        f"workflows.{path.stem}" for path in (ROOT / "workflows").glob("*.py") if path.stem != "__init__"
    )
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in {IO_CLIENTS!r} if m in sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == ""


def test_the_top_level_folders_match_the_design() -> None:
    for folder in ("workflows", "activities", "workers", "policies", "sandbox", "tests"):
        assert (ROOT / folder).is_dir(), folder
    for file in ("docker-compose.yml", "pyproject.toml", "README.md", "Makefile", ".ci/run"):
        assert (ROOT / file).is_file(), file


def test_the_import_contracts_forbid_what_these_tests_check() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    forbidden = {
        module
        for contract in contracts
        if contract["type"] == "forbidden" and contract["source_modules"] == ["workflows"]
        for module in contract["forbidden_modules"]
    }
    assert forbidden == {*IO_CLIENTS, "workers", "activities", "sandbox"}
    [product] = [c for c in contracts if c["type"] == "forbidden" and c["forbidden_modules"] == ["sandbox"]]
    assert set(product["source_modules"]) == {"suture", "workflows", "activities", "policies", "workers"}
