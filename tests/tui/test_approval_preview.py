"""The approval dialog's preview shows each changed line on its own line."""

from rich.console import Console

from tui.approval_screen import call_preview


def rendered(tool: str, arguments: dict) -> list[str]:
    console = Console(width=80, record=True)
    console.print(call_preview(tool, arguments))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_an_edit_of_a_fragment_without_newline_shows_old_and_new_lines_apart():
    lines = rendered(
        "edit_file", {"path": "rocket.py", "old_str": "hotle_frost", "new_str": "hotel_frost"}
    )
    assert lines[:2] == ["--- a/rocket.py", "+++ b/rocket.py"]
    assert "-hotle_frost" in lines and "+hotel_frost" in lines


def test_a_whole_file_write_without_final_newline_keeps_its_last_line():
    lines = rendered("write_file", {"path": "a.txt", "content": "one\ntwo"})
    assert lines[-2:] == ["+one", "+two"]


def test_a_command_is_shown_as_it_is():
    assert rendered("bash", {"command": "python3 test_rocket.py"}) == ["python3 test_rocket.py"]
