"""The one progress bar: on stderr (stdout keeps results and JSON), saying what runs and the time left.

The CLI draws it around the API's long loops; library loops that draw their own (universal
learning, landmark caching, evaluation) use it too, so every bar looks and estimates alike.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, Task, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class TimeLeft(TimeRemainingColumn):
    """Time left at the average pace since the start.

    rich's own estimate only keeps steps of the last 30 s, so it never shows for photos that take minutes.
    """

    def render(self, task: Task) -> Text:
        if not (task.total and task.completed and task.elapsed):
            return super().render(task)
        minutes, seconds = divmod(int(task.elapsed / task.completed * (task.total - task.completed)), 60)
        return Text(f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}", style="progress.remaining")


def bar(disable: bool = False, console: Console | None = None) -> Progress:
    """A transient bar on stderr; rich draws nothing where stderr is not a terminal (pipes, logs, tests)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeLeft())
    return Progress(*columns, console=console or Console(stderr=True), transient=True, disable=disable)
