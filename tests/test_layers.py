"""The layering rule of the README ("Layout"), checked by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(capsys, monkeypatch):
    importlinter = pytest.importorskip("importlinter.cli", reason="import-linter is a test dependency (make test)")
    monkeypatch.chdir(ROOT)
    code = importlinter.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out
