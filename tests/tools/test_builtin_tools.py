"""The default tools: schemas the model sees, behaviour, and errors returned as results."""

from __future__ import annotations

import pytest

from tools import LocalSandbox, SandboxConfig, ToolResult, default_tools


@pytest.fixture
def local(tmp_path):
    sandbox = LocalSandbox(tmp_path, SandboxConfig(output_head=200, output_tail=100))
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(params=["local", "docker"])
def sandbox(request, tmp_path):
    """Each tool behaves the same on the host and in Docker."""
    if request.param == "local":
        return request.getfixturevalue("local")
    box = request.getfixturevalue("docker_sandbox")
    box.exec("rm -rf /work/* /work/.[!.]*", timeout=20)
    return box


TOOLS = {t.name: t for t in default_tools()}


def run(sandbox, name: str, **args) -> ToolResult:
    return TOOLS[name].run(sandbox, args)


def test_default_tools_have_flat_openai_specs():
    assert list(TOOLS) == [
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "search",
        "submit",
    ]
    for tool in TOOLS.values():
        spec = tool.spec()
        assert set(spec) == {"name", "description", "parameters"}
        assert len(spec["description"]) > 60  # written for the model, not a stub
        params = spec["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        for prop in params["properties"].values():
            assert "anyOf" not in prop and "title" not in prop and "$ref" not in prop
            assert prop["type"] in {"string", "integer", "number", "boolean", "array"}
            assert prop.get("description")
    assert TOOLS["edit_file"].spec()["parameters"]["required"] == ["path", "new_str"]


def test_bash_reports_output_and_exit_code(sandbox):
    r = run(sandbox, "bash", command="echo hello; exit 3")
    assert r.is_error and r.text == "hello\n[exit code 3]"
    assert r.data["exit_code"] == 3
    r = run(sandbox, "bash", command="sleep 5", timeout=1)
    assert r.is_error and "timed out after 1 s" in r.text and r.data["timed_out"]


def test_bash_rejects_bad_arguments_as_a_result(local):
    r = run(local, "bash", timeout=5)
    assert r.is_error and "command" in r.text and "Field required" in r.text
    r = run(local, "bash", command="true", timeout=0)
    assert r.is_error and "timeout" in r.text


def test_write_then_read_with_line_numbers_and_ranges(sandbox):
    r = run(sandbox, "write_file", path="pkg/a.py", content="one\ntwo\nthree\n")
    assert not r.is_error and r.text == "created pkg/a.py (14 bytes)"
    assert "+two" in r.data["diff"]
    r = run(sandbox, "read_file", path="pkg/a.py")
    assert r.text == "     1\tone\n     2\ttwo\n     3\tthree"
    r = run(sandbox, "read_file", path="pkg/a.py", start_line=2, end_line=2)
    assert r.text == "     2\ttwo\n[lines 2-2 of 3; read on with start_line=3]"
    r = run(sandbox, "write_file", path="pkg/a.py", content="new\n")
    assert r.text.startswith("overwrote")


def test_long_files_are_paged(local):
    local.write_file("big.txt", "".join(f"line {i}\n" for i in range(1, 5001)))
    r = run(local, "read_file", path="big.txt")
    assert r.text.splitlines()[-1] == "[lines 1-2000 of 5000; read on with start_line=2001]"
    r = run(local, "read_file", path="big.txt", start_line=4999)
    assert r.text == "  4999\tline 4999\n  5000\tline 5000"
    r = run(local, "read_file", path="big.txt", start_line=5001)
    assert r.is_error and "past the end of big.txt (5000 lines)" in r.text


def test_reading_missing_directories_and_binaries_gives_errors(local):
    assert "No such file" in run(local, "read_file", path="nope.txt").text
    local.exec("mkdir d && printf 'a\\0b' > bin", timeout=5)
    assert "is a directory" in run(local, "read_file", path="d").text
    assert "binary file" in run(local, "read_file", path="bin").text


def test_edit_replaces_exactly_once_and_returns_a_diff(sandbox):
    sandbox.write_file("m.py", "def f():\n    return 1\n\ndef g():\n    return 1\n")
    r = run(sandbox, "edit_file", path="m.py", old_str="return 1", new_str="return 2")
    assert r.is_error and "occurs 2 times" in r.text and "line 2" in r.text and "line 5" in r.text
    assert sandbox.read_file("m.py").count("return 1") == 2  # unchanged
    r = run(
        sandbox,
        "edit_file",
        path="m.py",
        old_str="def g():\n    return 1",
        new_str="def g():\n    return 2",
    )
    assert not r.is_error and "replaced 1 occurrence at line 4" in r.text
    assert "-    return 1\n+    return 2\n" in r.data["diff"]
    assert sandbox.read_file("m.py").endswith("def g():\n    return 2\n")


def test_edit_without_a_match_shows_the_closest_candidates(local):
    local.write_file("m.py", "def compute_total(x):\n    return x\n")
    r = run(local, "edit_file", path="m.py", old_str="def compute_totl(x):", new_str="y")
    assert (
        r.is_error and "not found" in r.text and "line 1: 'def compute_total(x):\\n'" not in r.text
    )
    assert "line 1: 'def compute_total(x):'" in r.text


def test_edit_inserts_at_a_line(local):
    local.write_file("m.txt", "a\nb")
    r = run(local, "edit_file", path="m.txt", insert_line=0, new_str="top")
    assert not r.is_error and local.read_file("m.txt") == "top\na\nb"
    run(local, "edit_file", path="m.txt", insert_line=3, new_str="end")
    assert local.read_file("m.txt") == "top\na\nb\nend\n"
    r = run(local, "edit_file", path="m.txt", insert_line=9, new_str="x")
    assert r.is_error and "past the end" in r.text


def test_list_files_shows_a_tree_and_skips_ignored_names(sandbox):
    sandbox.exec("mkdir -p src/pkg .git node_modules && touch src/pkg/x.py src/y.py", timeout=10)
    sandbox.write_file("README", "hi\n")
    r = run(sandbox, "list_files", depth=3)
    assert r.text == "src/\n  pkg/\n    x.py (0 bytes)\n  y.py (0 bytes)\nREADME (3 bytes)"
    r = run(sandbox, "list_files", depth=1, ignore=["README"])
    assert r.text == "src/"


def test_search_is_like_grep_rn_and_capped(sandbox):
    sandbox.write_file("a.py", "import os\nx = 1\nimport re\n")
    sandbox.write_file("b.txt", "import nothing\n")
    r = run(sandbox, "search", pattern=r"^import \w+$", glob="*.py")
    assert r.text == "a.py:1:import os\na.py:3:import re"
    sandbox.write_file("many.txt", "hit\n" * 250)
    r = run(sandbox, "search", pattern="hit", path="many.txt")
    assert r.text.count("\n") == 200 and r.text.endswith(
        "[50 more matches not shown; narrow the search]"
    )
    assert run(sandbox, "search", pattern="zzz").text.startswith("no matches in")
    r = run(sandbox, "search", pattern="(unclosed")
    assert r.is_error and "error" in r.text


def test_submit_marks_the_task_done(local):
    r = run(local, "submit", summary="fixed it; tests pass")
    assert r.submitted and not r.is_error and r.data == {"summary": "fixed it; tests pass"}


def test_tool_failures_never_raise(tmp_path):
    sandbox = LocalSandbox(tmp_path)  # never started: every call fails inside the tool
    for name, args in (("bash", {"command": "true"}), ("read_file", {"path": "x"})):
        r = TOOLS[name].run(sandbox, args)
        assert r.is_error and "not started" in r.text
