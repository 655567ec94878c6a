"""How fast `dsv4 chat` opens and scrolls a long session (issue 7: open < 1 s, page scroll < 50 ms).

A session of at least `--events` events (default 10,000) is recorded first by the real agent loop
(scripted backend: reasoning, Markdown answers, bash commands and file edits with diffs, all
streamed in 12-character pieces; tools in a local sandbox). Then the app reopens it headless
(`--resume`), and we time:

- open: from starting the app to the first frame that paints the loaded transcript (the
  agent's own resume, which reads the journal again, runs after it and is timed apart);
- page scroll: PageUp from the end, each page drawn (the rows the terminal would receive);
- jump: to random places never drawn before (every block there rendered for the first time);
- the same open with a reference transcript that mounts one widget per block (what the
  virtualised transcript avoids), on the same events.

    .venv/bin/python bench/tui_bench.py [--events 10000] [--pages 40] [--no-reference]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dsml  # noqa: E402
from agent import Agent, AgentConfig  # noqa: E402
from agent.backends.scripted import ScriptedBackend  # noqa: E402
from agent.task_runner import make_sandbox  # noqa: E402
from tui import AgentFactory, ChatApp  # noqa: E402
from tui.transcript import Transcript  # noqa: E402

SIZE = (120, 40)


def _turn(i: int) -> str:
    reasoning = (
        f"Step {i}: the test output says the parser drops the last field when a line ends "
        "with a separator. I should look at how split handles the trailing empty string "
        "and then check the fixture files again before changing anything."
    )
    content = f"Step **{i}**: checking `parse_line` (see *tests/test_parse.py*)."
    if i % 2:
        call = ("bash", {"command": f"printf 'line %s\\n' {i} {i + 1} {i + 2} && echo done-{i}"})
    else:
        body = "".join(f"value_{i}_{k} = {k * i}\n" for k in range(6))
        call = ("write_file", {"path": f"src/mod_{i % 7}.py", "content": body})
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=call[0], arguments=call[1])],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def _submit() -> str:
    message = dsml.AssistantMessage(
        reasoning_content="All done.",
        tool_calls=[dsml.ToolCall(name="submit", arguments={"summary": "fixed"})],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def record_session(root: Path, events: int) -> tuple[AgentFactory, str, int, float]:
    """Run the agent until its journal holds at least `events` events."""
    project = root / "project"
    project.mkdir()
    probe = _count_events_per_step(root)
    steps = events // probe + 2
    script = [_turn(i) for i in range(steps)] + [_submit()]
    config = AgentConfig(
        sessions_dir=root / "sessions", approval={"mode": "auto"}, limits={"max_steps": None}
    )
    sandboxes = make_sandbox("local")
    factory = AgentFactory(
        config,
        make_backend=lambda: ScriptedBackend(script, model="scripted-bench"),
        make_sandbox=lambda: sandboxes(project),
    )
    start = time.perf_counter()
    agent = factory.open()
    result = agent.run("Fix the parser so that trailing separators keep their empty field.")
    factory.close(agent)
    took = time.perf_counter() - start
    n = sum(1 for _ in (result.session_dir / "events.jsonl").open("rb"))
    return factory, result.session_id, n, took


def _count_events_per_step(root: Path) -> int:
    probe = root / "probe"
    probe.mkdir()
    config = AgentConfig(sessions_dir=probe / "sessions", approval={"mode": "auto"})
    count = [0]
    backend = ScriptedBackend([_turn(1), _turn(2), _submit()])
    sandbox = make_sandbox("local")(probe)
    with Agent(
        config,
        backend=backend,
        sandbox=sandbox,
        on_event=lambda e: count.__setitem__(0, count[0] + 1),
    ) as agent:
        agent.run("probe")
    sandbox.stop()
    return max(1, count[0] // 3)


async def measure_app(factory: AgentFactory, session_id: str, pages: int) -> dict[str, object]:
    app = ChatApp(factory, resume=session_id)
    out: dict[str, object] = {}
    cpu0, start = time.process_time(), time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        out["running_s"] = time.perf_counter() - start
        transcript = app.query_one(Transcript)
        while not transcript.model.blocks:
            await asyncio.sleep(0.001)
        loaded = time.perf_counter()
        while not transcript.rendered_blocks:  # the transcript's rows are being painted
            await asyncio.sleep(0.001)
        out["open_s"] = time.perf_counter() - start
        out["open_cpu_s"] = time.process_time() - cpu0
        out["loaded_s"] = loaded - start
        out["blocks"] = len(transcript.model.blocks)
        out["rows"] = transcript.virtual_size.height
        out["rendered_at_open"] = transcript.rendered_blocks

        page_times, page_cpu = [], []
        for _ in range(pages):
            c0, t0 = time.process_time(), time.perf_counter()
            page = transcript.scrollable_content_region.height
            transcript.scroll_to(y=transcript.scroll_y - page, animate=False, immediate=True)
            _draw(transcript)
            page_times.append(time.perf_counter() - t0)
            page_cpu.append(time.process_time() - c0)
        out["page"], out["page_cpu"] = page_times, page_cpu

        rng = random.Random(7)
        jump_times, jump_cpu = [], []
        for _ in range(pages):
            target = rng.randrange(0, max(1, transcript.virtual_size.height - SIZE[1]))
            c0, t0 = time.process_time(), time.perf_counter()
            transcript.scroll_to(y=target, animate=False, immediate=True)
            _draw(transcript)
            jump_times.append(time.perf_counter() - t0)
            jump_cpu.append(time.process_time() - c0)
        out["jump"], out["jump_cpu"] = jump_times, jump_cpu

        t0 = time.perf_counter()
        await pilot.press("pageup")
        await pilot.pause()
        out["pilot_page_s"] = time.perf_counter() - t0
        out["rendered_total"] = transcript.rendered_blocks
        await pilot.press("ctrl+q")
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _draw(transcript: Transcript) -> None:
    """Produce every row the terminal would receive for the transcript's region."""
    transcript.render_lines(transcript.size.region)


async def measure_reference(factory: AgentFactory, session_id: str) -> float:
    """Open time with one mounted widget per block (the non-virtualised way)."""
    from textual.app import App
    from textual.containers import VerticalScroll
    from textual.widgets import Static

    from tui.transcript_model import TranscriptModel

    agent = factory.open(session_id)
    history = list(agent.store.events(agent.session_id))
    factory.close(agent)

    class Reference(App[None]):
        def compose(self):
            yield VerticalScroll(id="log")

    start = time.perf_counter()
    model = TranscriptModel()
    for event in history:
        model.apply(event)
    app = Reference()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one("#log")
        await log.mount_all([Static(b.renderable()) for b in model.blocks])
        log.scroll_end(animate=False)
        await pilot.pause()
        took = time.perf_counter() - start
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--no-reference", action="store_true", help="skip the mounted reference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsv4-tui-bench-") as tmp:
        factory, session_id, n_events, took = record_session(Path(tmp), args.events)
        t0 = time.perf_counter()
        agent = factory.open(session_id)
        factory.close(agent)
        resume_s = time.perf_counter() - t0
        app = asyncio.run(measure_app(factory, session_id, args.pages))
        reference = (
            None if args.no_reference else asyncio.run(measure_reference(factory, session_id))
        )

    ms = 1000.0
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"session: {n_events} events recorded in {took:.1f} s, {app['blocks']} blocks, "
        f"{app['rows']} rows at {SIZE[0]}x{SIZE[1]}"
    )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load} "
        "(wall times include waiting for a CPU; the CPU-time rows do not)"
    )
    print(f"{'measure':<44} {'value':>12} {'target':>10}")
    rows = [
        ("Agent.resume of the session (agent, apart)", f"{resume_s * ms:.0f} ms", ""),
        ("open: app start → app running (Textual)", f"{app['running_s'] * ms:.0f} ms", ""),
        ("open: app start → transcript loaded", f"{app['loaded_s'] * ms:.0f} ms", ""),
        ("open: app start → first frame drawn", f"{app['open_s'] * ms:.0f} ms", "< 1000 ms"),
        ("open: CPU time of this process", f"{app['open_cpu_s'] * ms:.0f} ms", ""),
        ("blocks rendered to show the first frame", f"{app['rendered_at_open']}", ""),
        ("page up, median", f"{statistics.median(app['page']) * ms:.2f} ms", "< 50 ms"),
        ("page up, p95", f"{_p95(app['page']) * ms:.2f} ms", "< 50 ms"),
        ("page up, max", f"{max(app['page']) * ms:.2f} ms", "< 50 ms"),
        ("page up, CPU time median", f"{statistics.median(app['page_cpu']) * ms:.2f} ms", ""),
        ("page up, CPU time max", f"{max(app['page_cpu']) * ms:.2f} ms", ""),
        ("jump to an undrawn place, median", f"{statistics.median(app['jump']) * ms:.2f} ms", ""),
        ("jump to an undrawn place, max", f"{max(app['jump']) * ms:.2f} ms", ""),
        ("jump, CPU time median", f"{statistics.median(app['jump_cpu']) * ms:.2f} ms", ""),
        ("jump, CPU time max", f"{max(app['jump_cpu']) * ms:.2f} ms", ""),
        ("PageUp key through Pilot (event → idle)", f"{app['pilot_page_s'] * ms:.1f} ms", ""),
        ("blocks rendered after all scrolling", f"{app['rendered_total']}", ""),
    ]
    if reference is not None:
        rows.append(("reference: one widget per block, open", f"{reference * ms:.0f} ms", ""))
        rows.append(("reference / virtualised open", f"{reference / app['open_s']:.1f}x", ""))
    for name, value, target in rows:
        print(f"{name:<44} {value:>12} {target:>10}")


if __name__ == "__main__":
    main()
