"""A/B routing of live traffic between the primary model and a challenger.

The split is deterministic rather than random: request n goes to the challenger when
``floor((n + 1) * p / 100) > floor(n * p / 100)``, so after any N requests the challenger has
had exactly ``floor(N * p / 100)`` of them, spread evenly. Small samples then match the
configured share (a random draw at 10 % over 50 requests lands anywhere from 1 to 10), and
per-arm comparisons in ``/metrics`` are not skewed by luck.
"""

from __future__ import annotations

from typing import Literal

Arm = Literal["primary", "challenger"]
PRIMARY: Arm = "primary"
CHALLENGER: Arm = "challenger"


class TrafficSplit:
    def __init__(self, challenger_percent: float) -> None:
        if not 0 <= challenger_percent <= 100:
            raise ValueError(f"challenger traffic percent {challenger_percent} is not within 0..100")
        self.percent = challenger_percent
        self._count = 0

    def next_arm(self) -> Arm:
        n = self._count
        self._count += 1
        if (n + 1) * self.percent // 100 > n * self.percent // 100:
            return CHALLENGER
        return PRIMARY
