"""The package stays pure Python: importing it pulls in no tensor library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dsml


def test_importing_dsml_loads_no_torch_or_numpy() -> None:
    code = (
        "import sys, dsml; heavy = {'torch', 'numpy', 'lxml', 'vllm', 'transformers'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_names_exist() -> None:
    for name in dsml.__all__:
        assert hasattr(dsml, name), name
