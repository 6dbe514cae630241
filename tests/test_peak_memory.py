"""Peak memory is per run: a second run in the same process does not inherit the first one's peak
(as ``ru_maxrss`` would), and memory held during the run counts."""

from __future__ import annotations

import numpy as np

from finetune.peak_memory import PeakMemory

MB = 2**20


def test_each_run_reports_its_own_peak() -> None:
    with PeakMemory("cpu", interval=0.01) as big:
        block = np.ones(400 * MB, dtype=np.uint8)  # touched, so resident
        held = big.mb
        del block
    with PeakMemory("cpu", interval=0.01) as small:
        small_block = np.ones(40 * MB, dtype=np.uint8)
        after = small.mb
        del small_block
    assert held - after > 300  # the first run's 400 MB are not in the second run's peak
    assert big.mb >= held
