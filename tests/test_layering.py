"""The dependency direction of design.md: tui -> agent -> {dsml, tools, model}."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "dsml": {"agent", "tui", "tools", "model"},
    "tools": {"agent", "tui", "dsml", "model"},
    "model": {"agent", "tui", "dsml", "tools"},
    "agent": {"tui"},
}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_layering(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        # The CLI may open the TUI lazily (design.md); everything else in agent may not.
        if package == "agent" and path.name == "cli.py":
            continue
        crossed = _imported_roots(path) & FORBIDDEN[package]
        bad += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(crossed)]
    assert not bad, "imports that cross design.md's layering:\n" + "\n".join(bad)


def test_cli_help_lists_commands() -> None:
    from agent.cli import build_parser

    assert "run" in build_parser().format_help()
