"""Peak memory of one training run, even when several run in one process (``supportbot compare``).

On CUDA the allocator's peak is reset at the start. On CPU, ``ru_maxrss`` is the peak of the whole
process's life — a second run would report the first's — so the resident size is sampled instead.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from types import TracebackType

import psutil
import torch


def _return_freed_memory() -> None:
    """Give memory freed by earlier work back to the OS, so it does not count as this run's."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the figure may include memory freed before the run


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; ``peak.mb`` is the highest use so far."""

    def __init__(self, device: str, interval: float = 0.05) -> None:
        self.device = device
        self.interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            _return_freed_memory()
            self._peak = self._process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mb(self) -> float:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        self._peak = max(self._peak, self._process.memory_info().rss)
        return self._peak / 2**20
