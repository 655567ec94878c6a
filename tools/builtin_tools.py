"""The default tool set: bash, read_file, write_file, edit_file, list_files, search, submit."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, Field

from tools.sandbox import ExecResult, Sandbox, SandboxError
from tools.tool import Tool, ToolResult

READ_PAGE_LINES = 2000
READ_PAGE_BYTES = 100_000
LINE_CUT = 2000  # characters shown of one very long line


class BashArgs(BaseModel):
    command: str = Field(description="The shell command(s) to run with bash in the work directory.")
    timeout: float = Field(
        default=120, ge=1, le=3600, description="Seconds before the command is killed."
    )


class BashTool(Tool):
    name = "bash"
    description = (
        "Run a bash command in the sandbox (a Linux container; the project is in /work, the "
        "current directory). Returns the combined stdout and stderr and the exit code. Each call "
        "is a fresh shell: `cd` and variables do not carry over, so chain with `&&`. stdin is "
        "empty, so interactive programs get EOF. Long outputs are cut in the middle. A command "
        "still running at its timeout is killed with all its child processes. Processes left "
        "running in the background keep running. No network unless the sandbox was given one."
    )
    Args = BashArgs

    def execute(self, sandbox: Sandbox, args: BashArgs) -> ToolResult:
        result = sandbox.exec(args.command, timeout=args.timeout)
        return ToolResult(
            text=render_exec(result, args.timeout),
            data=result.model_dump(),
            is_error=not result.ok,
        )


def render_exec(r: ExecResult, timeout: float) -> str:
    lines = [r.output.rstrip("\n")] if r.output else []
    if r.timed_out:
        lines.append(
            f"[timed out after {timeout:g} s: the command and its child processes were killed]"
        )
    elif r.interrupted:
        lines.append("[interrupted: the command and its child processes were killed]")
    elif r.oom_killed:
        lines.append("[killed: the sandbox ran out of memory (its memory limit was reached)]")
    elif r.exit_code is None:
        lines.append("[the command did not report an exit status]")
    elif r.signal:
        lines.append(f"[exit code {r.exit_code}: killed by {r.signal}]")
    else:
        lines.append(f"[exit code {r.exit_code}]")
    if r.notice:
        lines.append(f"[sandbox: {r.notice}]")
    return "\n".join(lines)


class ReadFileArgs(BaseModel):
    path: str = Field(description="File path, relative to /work (or absolute inside /work).")
    start_line: int | None = Field(default=None, ge=1, description="First line to show (1-based).")
    end_line: int | None = Field(default=None, ge=1, description="Last line to show (inclusive).")


class ReadFileTool(Tool):
    name = "read_file"
    description = (
        "Read a text file, shown with line numbers (`   12\\tline`). Give start_line/end_line for "
        f"a range; without them a long file is shown {READ_PAGE_LINES} lines at a time, with a "
        "note saying how to read on."
    )
    Args = ReadFileArgs

    def execute(self, sandbox: Sandbox, args: ReadFileArgs) -> ToolResult:
        start = args.start_line or 1
        end = args.end_line or start + READ_PAGE_LINES - 1
        if end < start:
            return self.error(f"end_line {end} is before start_line {start}")
        content = sandbox.read_lines(args.path, start, end)
        if start > max(content.total_lines, 1):
            return self.error(
                f"start_line {start} is past the end of {content.path} "
                f"({content.total_lines} lines)"
            )
        shown, used = [], 0
        for n, line in enumerate(content.text.splitlines(), content.start):
            line = line if len(line) <= LINE_CUT else line[:LINE_CUT] + " [... line cut ...]"
            if used + len(line) > READ_PAGE_BYTES and shown:
                break
            shown.append(f"{n:6d}\t{line}")
            used += len(line) + 1
        last = content.start + len(shown) - 1
        text = "\n".join(shown)
        if content.total_lines == 0:
            text = "(empty file)"
        elif last < content.total_lines:
            text += (
                f"\n[lines {content.start}-{last} of {content.total_lines}; read on with "
                f"start_line={last + 1}]"
            )
        data = {
            "path": content.path,
            "start": content.start,
            "end": last,
            "total_lines": content.total_lines,
        }
        return ToolResult(text=text, data=data)


class WriteFileArgs(BaseModel):
    path: str = Field(description="File path, relative to /work (or absolute inside /work).")
    content: str = Field(description="The whole new content of the file.")


class WriteFileTool(Tool):
    name = "write_file"
    description = (
        "Create a file or overwrite it completely with the given content; missing parent "
        "directories are created. To change part of an existing file, use edit_file instead."
    )
    Args = WriteFileArgs

    def execute(self, sandbox: Sandbox, args: WriteFileArgs) -> ToolResult:
        try:
            old = sandbox.read_file(args.path)
        except SandboxError:
            old = ""
        info = sandbox.write_file(args.path, args.content)
        verb = "created" if info["created"] else "overwrote"
        return ToolResult(
            text=f"{verb} {info['path']} ({info['bytes']} bytes)",
            data={**info, "diff": unified_diff(info["path"], old, args.content)},
        )


class EditFileArgs(BaseModel):
    path: str = Field(description="File path, relative to /work (or absolute inside /work).")
    old_str: str | None = Field(
        default=None,
        description="Exact text to replace; it must occur exactly once in the file (include "
        "surrounding lines to make it unique). Leave out when inserting.",
    )
    new_str: str = Field(description="The replacement text, or the text to insert.")
    insert_line: int | None = Field(
        default=None,
        ge=0,
        description="Insert new_str after this line number instead of replacing (0: at the top).",
    )


class EditFileTool(Tool):
    name = "edit_file"
    description = (
        "Edit a text file: replace old_str, which must match exactly once (whitespace "
        "included), with new_str; or, with insert_line, insert new_str after that line. On no "
        "match or several matches nothing changes and the candidates are shown."
    )
    Args = EditFileArgs

    def execute(self, sandbox: Sandbox, args: EditFileArgs) -> ToolResult:
        old = sandbox.read_file(args.path)
        if args.insert_line is not None:
            if args.old_str is not None:
                return self.error("give either old_str (replace) or insert_line (insert), not both")
            lines = old.splitlines(keepends=True)
            if args.insert_line > len(lines):
                return self.error(
                    f"insert_line {args.insert_line} is past the end of {args.path} "
                    f"({len(lines)} lines)"
                )
            if lines and not lines[-1].endswith("\n") and args.insert_line == len(lines):
                lines[-1] += "\n"
            piece = args.new_str if args.new_str.endswith("\n") else args.new_str + "\n"
            new = "".join(lines[: args.insert_line]) + piece + "".join(lines[args.insert_line :])
            what = f"inserted {piece.count(chr(10))} line(s) after line {args.insert_line}"
        else:
            if not args.old_str:
                return self.error("old_str is required (or give insert_line to insert)")
            count = old.count(args.old_str)
            if count != 1:
                return self.error(_candidates(args.path, old, args.old_str, count), matches=count)
            new = old.replace(args.old_str, args.new_str, 1)
            line = old[: old.index(args.old_str)].count("\n") + 1
            what = f"replaced 1 occurrence at line {line}"
        sandbox.write_file(args.path, new)
        diff = unified_diff(args.path, old, new)
        return ToolResult(
            text=f"{what} in {args.path}\n{diff}", data={"path": args.path, "diff": diff}
        )


def _candidates(path: str, text: str, needle: str, count: int) -> str:
    lines = text.splitlines()
    if count > 1:
        starts, pos = [], text.find(needle)
        while pos != -1:
            starts.append(text[:pos].count("\n") + 1)
            pos = text.find(needle, pos + 1)
        shown = "\n".join(f"  line {n}: {lines[n - 1].strip()[:120]}" for n in starts[:10])
        return (
            f"old_str occurs {count} times in {path}; it must match exactly once. Add "
            f"surrounding lines to make it unique. Matches start at:\n{shown}"
        )
    first = next((s for s in needle.splitlines() if s.strip()), needle)
    close = difflib.get_close_matches(first.strip(), [s.strip() for s in lines], n=3, cutoff=0.5)
    if not close:
        return f"old_str not found in {path} (nothing similar either); read the file first."
    hits = []
    for c in close:
        n = next(i for i, s in enumerate(lines, 1) if s.strip() == c)
        hits.append(f"  line {n}: {lines[n - 1]!r}")
    return (
        f"old_str not found in {path}; it must match exactly, whitespace included. "
        f"Closest lines to its first line {first!r}:\n" + "\n".join(hits)
    )


def unified_diff(path: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


class ListFilesArgs(BaseModel):
    path: str = Field(default=".", description="Directory to list, relative to /work.")
    depth: int = Field(default=2, ge=1, le=10, description="How many levels deep to go.")
    ignore: list[str] = Field(
        default_factory=list,
        description="Extra names to skip (.git, node_modules, __pycache__, .venv are skipped "
        "already).",
    )


class ListFilesTool(Tool):
    name = "list_files"
    description = (
        "Show the files and directories under a path as an indented tree (directories end "
        "with /, files show their size), down to the given depth."
    )
    Args = ListFilesArgs

    def execute(self, sandbox: Sandbox, args: ListFilesArgs) -> ToolResult:
        listing = sandbox.list_files(args.path, args.depth, args.ignore)
        lines = []
        for e in listing["entries"]:
            name = e["path"].rsplit("/", 1)[-1]
            indent = "  " * (e["depth"] - 1)
            if e["type"] == "dir":
                lines.append(f"{indent}{name}/")
            elif e["type"] == "link":
                lines.append(f"{indent}{name} -> (symlink)")
            else:
                lines.append(f"{indent}{name} ({e['size']} bytes)")
        if listing["omitted"]:
            lines.append(f"[{listing['omitted']} more entries not shown; list a subdirectory]")
        text = "\n".join(lines) if lines else f"({args.path} is empty)"
        return ToolResult(text=text, data=listing)


class SearchArgs(BaseModel):
    pattern: str = Field(description="Regular expression (Python syntax) to look for.")
    path: str = Field(default=".", description="File or directory to search, relative to /work.")
    glob: str | None = Field(
        default=None, description='Only files whose name matches, e.g. "*.py".'
    )
    ignore_case: bool = Field(default=False, description="Match regardless of case.")


class SearchTool(Tool):
    name = "search"
    description = (
        "Search file contents for a regular expression, like `grep -rn`: prints "
        "`path:line:text` for each matching line, at most 200. Skips binary files and "
        ".git, node_modules, __pycache__, .venv."
    )
    Args = SearchArgs
    limit = 200

    def execute(self, sandbox: Sandbox, args: SearchArgs) -> ToolResult:
        found = sandbox.search(
            args.pattern,
            args.path,
            glob=args.glob,
            ignore_case=args.ignore_case,
            limit=self.limit,
        )
        lines = [f"{m['path']}:{m['line']}:{m['text']}" for m in found["matches"]]
        if found["omitted"]:
            lines.append(f"[{found['omitted']} more matches not shown; narrow the search]")
        if not lines:
            lines = [f"no matches in {found['files_searched']} files"]
        return ToolResult(text="\n".join(lines), data=found)


class SubmitArgs(BaseModel):
    summary: str = Field(description="What was done and how it was checked.")


class SubmitTool(Tool):
    name = "submit"
    description = (
        "Finish the task: call this once the work is done and checked, with a short summary. "
        "Nothing runs after it."
    )
    Args = SubmitArgs

    def execute(self, sandbox: Sandbox, args: SubmitArgs) -> ToolResult:
        return ToolResult(text="submitted", data={"summary": args.summary}, submitted=True)


def default_tools() -> list[Tool]:
    """bash, read_file, write_file, edit_file, list_files, search, submit."""
    return [
        BashTool(),
        ReadFileTool(),
        WriteFileTool(),
        EditFileTool(),
        ListFilesTool(),
        SearchTool(),
        SubmitTool(),
    ]
