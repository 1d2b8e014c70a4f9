"""How the hub shows transfers: one rich bar of bytes for a pull, a status line for a push.

huggingface_hub draws its own tqdm bars, which would interleave with ours; they are mirrored into
a rich bar (pulls) or hidden (pushes).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def progress_class(enabled: bool, label: str):
    """A tqdm class for ``snapshot_download``: silent, or drawing one rich bar of bytes."""
    from tqdm.auto import tqdm as base

    if not enabled:
        class Silent(base):
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            @classmethod
            def close_all(cls) -> None:
                pass

        return Silent

    from rich.progress import (
        BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
    )

    class RichBytes(base):
        """Mirrors tqdm's byte counters into a rich progress bar; other bars stay hidden."""

        live: list = []

        @classmethod
        def close_all(cls) -> None:
            """snapshot_download leaves its byte bar open; close it before printing anything."""
            for bar in list(cls.live):
                bar.close()

        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["gui"] = True  # tqdm draws nothing itself
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)
            self._rich = None
            if self.unit == "B" and not str(self.desc).startswith("Reconstruct"):
                self._rich = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                )
                self._rich.start()
                self._task = self._rich.add_task(f"pulling {label}", total=self.total or None)
                RichBytes.live.append(self)

        def display(self, *args, **kwargs):
            if self._rich is not None:
                self._rich.update(self._task, completed=self.n, total=self.total or None)

        def clear(self, *args, **kwargs):
            pass

        def close(self):
            if getattr(self, "_rich", None) is not None:
                self.display()
                self._rich.stop()
                self._rich = None
                RichBytes.live.remove(self)
            super().close()

    return RichBytes


@contextmanager
def quiet_hf_bars() -> Iterator[None]:
    """huggingface_hub's own tqdm bars would interleave with our output; hide them during a push."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    already = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not already:
            enable_progress_bars()


@contextmanager
def status(enabled: bool, text: str) -> Iterator[None]:
    if not enabled:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield
