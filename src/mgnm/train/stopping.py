"""Early stopping on the validation curve, raw or smoothed (PROTOCOL: patience 20).

The rule: after every epoch the validation metric joins a window of the last ``window``
values; once the window is full, training stops when its mean has not strictly improved for
more than ``patience`` epochs (the first ``window - 1`` epochs never count against it, so a
lucky first epoch cannot stand for a whole window). ``window = 1`` is the usual rule on the
raw curve. The best epoch (whose
weights and test metrics are reported) is chosen on the raw curve either way: smoothing only
decides when to stop, so a noisy curve stops less by chance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EarlyStopping:
    patience: int
    window: int = 1
    recent: list[float] = field(default_factory=list)  # the last ``window`` values
    best_smoothed: float = -math.inf
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's validation value; True when training should stop now."""
        self.recent = (self.recent + [float(value)])[-self.window:]
        if len(self.recent) < self.window:
            return False
        smoothed = sum(self.recent) / len(self.recent)
        if smoothed > self.best_smoothed:
            self.best_smoothed, self.bad_epochs = smoothed, 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs > self.patience

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        return cls(int(state["patience"]), int(state["window"]),
                   [float(v) for v in state["recent"]], float(state["best_smoothed"]),
                   int(state["bad_epochs"]))


def replay(records: list[dict[str, Any]], metric: str, patience: int,
           window: int = 1) -> dict[str, Any]:
    """Where a run would have stopped, and what it would have reported, had it used this
    rule: from the epoch records of a longer run (``log.jsonl``). Training does not depend on
    when it stops, so this equals running with the rule. Returns ``stop_epoch``,
    ``best_epoch`` (raw-curve best up to the stop) and that epoch's ``valid`` and ``test``."""
    rule = EarlyStopping(patience, window)
    best: dict[str, Any] | None = None
    stop = records[-1]["epoch"] if records else 0
    for rec in records:
        if best is None or rec["valid"][metric] > best["valid"][metric]:
            best = rec
        if rule.update(rec["valid"][metric]):
            stop = rec["epoch"]
            break
    if best is None:
        raise ValueError("no epoch records")
    return {"stop_epoch": stop, "best_epoch": best["epoch"], "valid": best["valid"],
            "test": best.get("test") or {}}
