"""The progress line of `embedserve embed` (embedserve/cli/embed.py): what reaches the terminal.

A terminal is emulated the simple way: carriage returns move to column 0 and later characters
overwrite earlier ones, so what the user sees is what these tests assert on.
"""

from __future__ import annotations

import io

from embedserve.cli import embed as embed_cli


class FakeTerminal(io.StringIO):
    """A stream that says it is a TTY; `screen()` replays it as a terminal shows it."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        rows, row, col = [""], 0, 0
        for char in self.getvalue():
            if char == "\n":
                rows.append("")
                row, col = row + 1, 0
            elif char == "\r":
                col = 0
            else:
                line = rows[row]
                rows[row] = line[:col].ljust(col) + char + line[col + 1:]
                col += 1
        return rows


def test_a_shorter_line_leaves_nothing_of_the_longer_one_behind():
    term = FakeTerminal()
    progress = embed_cli.ProgressLine(term, columns=200)
    progress.draw("job_1 [....] 2999/3000 70/s ETA 12s in_progress")
    progress.draw("job_1 [####] 3000/3000 71/s ETA 0s completed")
    progress.finish()
    assert term.screen()[0].rstrip() == "job_1 [####] 3000/3000 71/s ETA 0s completed"
    assert term.screen()[1:] == [""]  # finish() ended the line


def test_a_pipe_gets_one_plain_line_per_update():
    pipe = io.StringIO()  # not a TTY: no carriage returns or padding in a log file
    progress = embed_cli.ProgressLine(pipe)
    progress.draw("a longer first line")
    progress.draw("short")
    progress.finish()
    assert pipe.getvalue() == "a longer first line\nshort\n"


def test_a_line_wider_than_the_terminal_is_cut_so_it_redraws_in_place():
    # A wrapped line cannot be redrawn: a carriage return only reaches the start of its last row.
    term = FakeTerminal()
    progress = embed_cli.ProgressLine(term, columns=20)
    progress.draw("x" * 50)
    progress.draw("y" * 50)
    assert term.screen() == ["y" * 19]


def test_a_message_between_updates_does_not_mix_with_the_line():
    term = FakeTerminal()
    progress = embed_cli.ProgressLine(term, columns=200)
    progress.draw("job_1 [##..] 1500/3000 70/s ETA 21s in_progress")
    progress.say("poll failed; retrying in 1s")
    progress.draw("job_1 [###.] 2000/3000 70/s ETA 14s")
    progress.finish()
    assert [row.rstrip() for row in term.screen()] == [
        "poll failed; retrying in 1s", "job_1 [###.] 2000/3000 70/s ETA 14s", ""]


def test_progress_redraws_over_a_longer_line_on_stderr(monkeypatch):
    """The reported case: `... 3000/3000 71/s ETA 0s completedess` (the tail of in_progress left over)."""
    term = FakeTerminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(embed_cli, "_line", embed_cli.ProgressLine() if hasattr(embed_cli, "ProgressLine") else None,
                        raising=False)
    embed_cli.progress("job_1", "in_progress", 2990, 3000, 2990, 42.0)
    embed_cli.progress("job_1", "completed", 3000, 3000, 3000, 42.2)
    embed_cli._end_progress()
    assert [row.rstrip() for row in term.screen()] == [f"job_1 [{'#' * 30}] 3000/3000 71/s ETA 0s completed", ""]
