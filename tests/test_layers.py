"""The layer contract (DESIGN §2) holds: import-linter's contracts in pyproject.toml, and no step
that asks whether it runs in the sandbox."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "5 kept, 0 broken" in r.stdout


def test_no_step_branches_on_the_sandbox():
    """Steps get a host runtime; none of them reads a sandbox flag or names the sandbox package."""
    offenders = []
    for path in sorted((ROOT / "inflab" / "lab_steps").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "sandbox":
                offenders.append(f"{path.name}:{node.lineno} .sandbox")
            elif isinstance(node, ast.Name) and node.id == "sandbox":
                offenders.append(f"{path.name}:{node.lineno} sandbox")
            elif isinstance(node, ast.ImportFrom) and node.module and "sandbox" in node.module:
                offenders.append(f"{path.name}:{node.lineno} import {node.module}")
    assert offenders == []
