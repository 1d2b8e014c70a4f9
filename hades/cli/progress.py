"""The progress bar of a distillation run: one line per chunk of generations, on stderr."""

from __future__ import annotations

from typing import Callable


class RunProgress:
    """A rich progress bar that starts with the run's first report (settings, folder and checkpoint are good by then).

    ``headline()`` is printed once, just before the bar; ``stats(progress)`` is the bar's text after
    each chunk. Call :meth:`stop` before printing anything else.
    """

    def __init__(self, console, total: int, headline: Callable[[], str], stats: Callable[[object], str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console, self.total, self.headline, self.stats = console, total, headline, stats
        self.bar = Progress(TextColumn("gen"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
                            TimeElapsedColumn(), console=console)
        self.task = None

    def __call__(self, progress) -> None:
        if self.task is None:
            self.console.print(self.headline())
            self.bar.start()
            self.task = self.bar.add_task("distill", total=self.total, stats="compiling")
        self.bar.update(self.task, completed=progress.generation,
                        stats=self.stats(progress) if progress.generation else "compiling")

    def stop(self) -> None:
        self.bar.stop()
