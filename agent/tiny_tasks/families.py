"""Task families small enough for dsv4-tiny to master, each instance checkable by its own test.

A `Task` holds the instruction, the files to put in the sandbox, the expert's plan (the tool
calls that solve it, some of which depend on what an earlier call printed), and `check`, which
decides success from the sandbox's files and the run's final answer, never from the model's
claims. Instances come from a seed; a fixed hash of the instruction splits them into a training
pool and a held-out pool that never meet (`held_out(task)`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Short, common, lower-case words: they become single BPE tokens, so copying them is easy.
WORDS = (
    "apple bread chair delta eagle fable grape house index jolly kite lemon mango night ocean "
    "piano queen river stone tiger umbra valve water xenon yacht zebra amber blaze cedar dune "
    "ember frost glade harbor ivory jade koala lotus maple nectar orbit pearl quartz raven "
    "sable thorn ultra violet willow yarrow zephyr acorn basil coral daisy elder fern ginger "
    "hazel iris juniper kelp lilac moss nutmeg olive poppy quill reed sage tulip vine wheat "
    "alpha bravo charlie echo golf hotel india kilo lima metro nova oscar papa romeo sierra "
    "tango union victor whiskey yankee zulu cloud storm rain snow wind sun moon star comet "
    "planet rocket engine gear wheel lamp desk book page note letter paper ink pen brush paint"
).split()
EXTENSIONS = ("txt", "md", "log", "csv")
FAMILIES = (
    "create_file",
    "append_line",
    "replace_line",
    "rename_file",
    "count_lines",
    "count_matches",
    "command_output",
    "run_script",
    "fix_typo",
)
HELD_OUT_MODULUS = 5  # one instruction in five (by hash) is held out from training


class Probe(Protocol):
    """What a task's check may do in the sandbox after the run."""

    def read(self, path: str) -> str | None:
        """The file's text, None when it does not exist."""
        ...

    def run(self, command: str) -> tuple[int, str]:
        """(exit code, output) of a shell command in the work directory."""
        ...


Check = Callable[[Probe, str], bool]


@dataclass(frozen=True)
class Step:
    """One expert tool call. `args` may hold the placeholder OUTPUT: the previous call's output."""

    tool: str
    args: dict[str, str]
    thought: str


@dataclass
class Task:
    family: str
    instruction: str
    files: dict[str, str]
    steps: list[Step]
    check: Callable[[Probe, str], bool] = field(repr=False)
    """check(probe, final_answer) -> solved, looking at the sandbox through `probe`."""
    answer: str = "Done."
    """What the expert submits; OUTPUT means: the last tool call's output, stripped."""


OUTPUT = "\x00OUTPUT\x00"


def _words(rng: random.Random, n: int) -> list[str]:
    return rng.sample(WORDS, n)


def _path(rng: random.Random, ext: str | None = None) -> str:
    return f"{rng.choice(WORDS)}.{ext or rng.choice(EXTENSIONS)}"


def _lines(rng: random.Random, n: int) -> list[str]:
    return [" ".join(_words(rng, rng.randint(1, 3))) for _ in range(n)]


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _file_is(path: str, expected: str) -> Check:
    return lambda probe, answer: probe.read(path) == expected


def _answer_is_output(command: str, files: dict[str, str]) -> Check:
    """The answer must equal what `command` prints, run now on the files left unchanged."""

    def check(probe: Probe, answer: str) -> bool:
        if any(probe.read(path) != text for path, text in files.items()):
            return False
        code, out = probe.run(command)
        return code in (0, 1) and answer.strip() == out.strip()  # grep -c exits 1 on zero

    return check


def create_file(rng: random.Random) -> Task:
    path, line = _path(rng), " ".join(_words(rng, rng.randint(2, 4)))
    return Task(
        "create_file",
        f"Create the file {path} containing the line: {line}",
        {},
        [Step("write_file", {"path": path, "content": line + "\n"}, f"I will write {path}.")],
        _file_is(path, line + "\n"),
    )


def append_line(rng: random.Random) -> Task:
    path, lines = _path(rng), _lines(rng, rng.randint(2, 5))
    line = " ".join(_words(rng, rng.randint(2, 3)))
    return Task(
        "append_line",
        f"Append the line: {line}\nto the end of {path}.",
        {path: _text(lines)},
        [Step("bash", {"command": f"echo '{line}' >> {path}"}, f"I will append to {path}.")],
        _file_is(path, _text(lines + [line])),
    )


def replace_line(rng: random.Random) -> Task:
    path = _path(rng)
    while True:
        lines = _lines(rng, rng.randint(3, 6))
        old, new = rng.choice(lines), " ".join(_words(rng, rng.randint(1, 3)))
        # edit_file replaces a text that occurs exactly once: the old line must be unique, even
        # as a substring of the other lines.
        if _text(lines).count(old) == 1 and new not in lines:
            break
    out = [new if line == old else line for line in lines]
    return Task(
        "replace_line",
        f"In {path}, replace the line: {old}\nwith the line: {new}",
        {path: _text(lines)},
        [
            Step(
                "edit_file",
                {"path": path, "old_str": old, "new_str": new},
                f"I will edit the line in {path}.",
            )
        ],
        _file_is(path, _text(out)),
    )


def rename_file(rng: random.Random) -> Task:
    ext = rng.choice(EXTENSIONS)
    a, b = (f"{w}.{ext}" for w in _words(rng, 2))
    content = _text(_lines(rng, rng.randint(1, 3)))

    def check(probe: Probe, answer: str) -> bool:
        return probe.read(b) == content and probe.read(a) is None

    return Task(
        "rename_file",
        f"Rename the file {a} to {b}.",
        {a: content},
        [Step("bash", {"command": f"mv {a} {b}"}, f"I will move {a} to {b}.")],
        check,
    )


def count_lines(rng: random.Random) -> Task:
    path, n = _path(rng), rng.randint(1, 30)
    files, command = {path: _text(_lines(rng, n))}, f"wc -l < {path}"
    return Task(
        "count_lines",
        f"How many lines does {path} have? Submit only the number.",
        files,
        [Step("bash", {"command": command}, f"I will count the lines of {path}.")],
        _answer_is_output(command, files),
        answer=OUTPUT,
    )


def count_matches(rng: random.Random) -> Task:
    path, word = _path(rng), rng.choice(WORDS)
    lines = _lines(rng, rng.randint(3, 12))
    for i in rng.sample(range(len(lines)), rng.randint(0, len(lines))):
        if rng.random() < 0.5:
            lines[i] = f"{lines[i]} {word}"
    files, command = {path: _text(lines)}, f"grep -c {word} {path}"
    return Task(
        "count_matches",
        f"How many lines of {path} contain the word {word}? Submit only the number.",
        files,
        [Step("bash", {"command": command}, f"I will count {word} in {path}.")],
        _answer_is_output(command, files),
        answer=OUTPUT,
    )


def command_output(rng: random.Random) -> Task:
    path, lines = _path(rng), _lines(rng, rng.randint(2, 6))
    command = rng.choice([f"head -n 1 {path}", f"tail -n 1 {path}", f"sort {path} | head -n 1"])
    files = {path: _text(lines)}
    return Task(
        "command_output",
        f"What does the command `{command}` print? Submit only its output.",
        files,
        [Step("bash", {"command": command}, "I will run the command.")],
        _answer_is_output(command, files),
        answer=OUTPUT,
    )


def run_script(rng: random.Random) -> Task:
    name = f"{rng.choice(WORDS)}.py"
    a, b, op, w = rng.randint(2, 99), rng.randint(2, 99), rng.choice("+-*"), rng.choice(WORDS)
    files, command = {name: f'x = {a} {op} {b}\nprint("{w}", x)\n'}, f"python3 {name}"
    return Task(
        "run_script",
        f"Run the script {name} with python3 and submit only what it prints.",
        files,
        [Step("bash", {"command": command}, f"I will run {name}.")],
        _answer_is_output(command, files),
        answer=OUTPUT,
    )


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(len(word) - 1)
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return swapped if swapped != word else word[:-1]


def fix_typo(rng: random.Random) -> Task:
    module = rng.choice(WORDS)
    good = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"
    bad = _typo(rng, good)
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    op = rng.choice("+*")
    expected = a + b if op == "+" else a * b
    src = f"def {bad}(a, b):\n    return a {op} b\n"
    test = f"from {module} import {good}\n\nassert {good}({a}, {b}) == {expected}\nprint('ok')\n"
    test_name = f"test_{module}.py"
    fixed = src.replace(bad, good)

    def check(probe: Probe, answer: str) -> bool:
        # The task's own test, unchanged, must pass; the module must differ only by the fix.
        code, out = probe.run(f"python3 {test_name}")
        passed = code == 0 and out.strip() == "ok"
        return passed and probe.read(test_name) == test and probe.read(f"{module}.py") == fixed

    return Task(
        "fix_typo",
        f"{module}.py has the typo {bad} where it should say {good}. "
        f"Fix it so that python3 {test_name} prints ok.",
        {f"{module}.py": src, test_name: test},
        [
            Step(
                "edit_file",
                {"path": f"{module}.py", "old_str": bad, "new_str": good},
                f"I will fix the typo in {module}.py.",
            ),
            Step("bash", {"command": f"python3 {test_name}"}, "I will run the test."),
        ],
        check,
    )


GENERATORS: dict[str, Callable[[random.Random], Task]] = {
    "create_file": create_file,
    "append_line": append_line,
    "replace_line": replace_line,
    "rename_file": rename_file,
    "count_lines": count_lines,
    "count_matches": count_matches,
    "command_output": command_output,
    "run_script": run_script,
    "fix_typo": fix_typo,
}


def held_out(task: Task) -> bool:
    """Whether an instance belongs to the held-out pool (fixed by its instruction's hash)."""
    digest = hashlib.sha256(task.instruction.encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELD_OUT_MODULUS == 0


def sample_tasks(
    n: int, seed: int, *, split: str = "train", families: tuple[str, ...] = FAMILIES
) -> list[Task]:
    """`n` instances cycling through `families`, all from one split ("train" or "held_out")."""
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    rng = random.Random(seed)
    tasks: list[Task] = []
    while len(tasks) < n:
        family = families[len(tasks) % len(families)]
        task = GENERATORS[family](rng)
        if held_out(task) == (split == "held_out"):
            tasks.append(task)
    return tasks
