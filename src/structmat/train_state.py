"""The running state of a training run (step, per-evaluation rows, the current
logging interval's sums, wall seconds and tokens), and its checkpoint form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from structmat._checks import fail

__all__ = ["Interval", "RunState"]

# Row fields that differ between identical runs (wall time) or repeat the clock.
_CLOCK = ("seconds", "tokens")


@dataclass
class Interval:
    """Running sums over the steps since the last evaluation."""

    loss: float = 0.0  # sum over samples of the per-sample loss
    score: float = 0.0  # sum over samples of the per-sample score
    count: float = 0.0  # samples

    def add(self, loss_sum: float, score_sum: float, count: float) -> None:
        self.loss += loss_sum
        self.score += score_sum
        self.count += count


@dataclass
class RunState:
    """Everything about a run's progress that a checkpoint must restore (besides
    the model, optimizer, scheduler and RNG states).

    Attributes:
        step: optimizer steps taken.
        rows: one dict per evaluation: step, seconds, tokens, lr, train_loss,
            train_<metric>, val_loss, val_<metric> (the lines of metrics.jsonl).
        interval: sums since the last evaluation.
        seconds: wall seconds spent in training steps so far.
        tokens: real (unpadded) training tokens seen so far.
    """

    step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    interval: Interval = field(default_factory=Interval)
    seconds: float = 0.0
    tokens: float = 0.0

    @property
    def history(self) -> list[dict[str, Any]]:
        """The rows without their clock (what metrics.json reports; equal across
        a straight run and a stopped-and-resumed one)."""
        return [{k: v for k, v in row.items() if k not in _CLOCK} for row in self.rows]

    def record(self, metric: str, lr: float, val: dict[str, float]) -> dict[str, Any]:
        """Close the interval with an evaluation: append its row, reset the sums."""
        n = self.interval.count
        row = {
            "step": self.step,
            "seconds": self.seconds,
            "tokens": self.tokens,
            "lr": lr,
            "train_loss": self.interval.loss / n,
            f"train_{metric}": self.interval.score / n,
            "val_loss": val["loss"],
            f"val_{metric}": val[metric],
        }
        self.rows.append(row)
        self.interval = Interval()
        return row

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rows": [dict(r) for r in self.rows],
            "interval": asdict(self.interval),
            "train_seconds": self.seconds,
            "train_tokens": self.tokens,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], source: str) -> RunState:
        """Inverse of ``to_checkpoint``; a format-1 checkpoint's ``history`` becomes
        rows whose clock is unknown (None).

        Raises:
            ValueError: entries missing or of the wrong type.
        """
        try:
            if "rows" in state:
                rows = [dict(r) for r in state["rows"]]
            else:
                rows = [
                    {"step": h["step"], "seconds": None, "tokens": None, **h}
                    for h in state["history"]
                ]
            interval = state["interval"]
            return cls(
                step=int(state["step"]),
                rows=rows,
                interval=Interval(
                    float(interval["loss"]), float(interval["score"]), float(interval["count"])
                ),
                seconds=float(state["train_seconds"]),
                tokens=float(state["train_tokens"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise fail("resume", f"a checkpoint with a run state at {source}", f"{err!r}") from err
