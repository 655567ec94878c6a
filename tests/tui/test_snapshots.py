"""Snapshots of the main screens (pytest-textual-snapshot; `--snapshot-update` rewrites them
after an intended change of look): a resumed session, the approval dialog, the help screen."""

from __future__ import annotations

from tui import ChatApp
from tui.approval_screen import ApprovalScreen
from tui.composer import Composer
from tui.transcript import Transcript

SIZE = (110, 34)


def resumed_app(make_factory, kit, tmp_path) -> ChatApp:
    factory = make_factory([])
    session_id = kit.write_session(factory.config.sessions_dir, steps=3)
    return ChatApp(factory, resume=session_id)


async def _ready(pilot) -> None:
    app = pilot.app
    app.query_one(Composer).cursor_blink = False
    await _settled(pilot, "idle")


async def _settled(pilot, activity: str) -> None:
    """Wait until the status shows `activity` and every block's height is measured (so that
    the scrollbar is where it will stay)."""
    composer, transcript = pilot.app.query_one(Composer), pilot.app.query_one(Transcript)
    while composer.border_subtitle != activity or not (
        transcript.model.blocks and transcript.fully_measured
    ):
        await pilot.pause(0.02)
    await pilot.pause()


def test_snapshot_resumed_session(snap_compare, make_factory, kit, tmp_path):
    app = resumed_app(make_factory, kit, tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready)


def test_snapshot_reasoning_and_output_expanded(snap_compare, make_factory, kit, tmp_path):
    app = resumed_app(make_factory, kit, tmp_path)

    async def expand(pilot) -> None:
        await _ready(pilot)
        transcript = app.query_one(Transcript)
        transcript.toggle_last()  # the newest tool panel
        reasoning = [b for b in transcript.model.blocks if b.toggleable and b.step == 3][0]
        transcript.toggle(reasoning)
        transcript.scroll_end(animate=False, immediate=True)
        await _settled(pilot, "idle")
        assert transcript.is_vertical_scroll_end

    assert snap_compare(app, terminal_size=SIZE, run_before=expand)


def test_snapshot_approval_dialog(snap_compare, make_factory, kit):
    script = [
        kit.turn(
            "Write the greeting module.",
            (
                "write_file",
                {"path": "greet.py", "content": "def greet(name):\n    return f'hi {name}'\n"},
            ),
        )
    ]
    app = ChatApp(make_factory(script, approval="ask"))

    async def ask(pilot) -> None:
        app.query_one(Composer).cursor_blink = False
        while app.agent is None:
            await pilot.pause(0.02)
        app.on_composer_submitted(Composer.Submitted("add a greet function"))
        while not isinstance(app.screen, ApprovalScreen):
            await pilot.pause(0.02)
        await _settled(pilot, "waiting for approval")

    assert snap_compare(app, terminal_size=SIZE, run_before=ask)


def test_snapshot_help(snap_compare, make_factory, kit, tmp_path):
    app = resumed_app(make_factory, kit, tmp_path)

    async def help_(pilot) -> None:
        await _ready(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=help_)
