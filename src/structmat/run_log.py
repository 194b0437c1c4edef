"""Per-evaluation logs a tool can read: ``metrics.jsonl`` (one JSON object per
evaluation) and, optionally, TensorBoard scalars.

metrics.jsonl is rewritten atomically from the run state when a run starts (so a
resumed run holds exactly the checkpointed rows: none lost, none repeated, no
half-written last line from a killed process), then appended to after each
evaluation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from structmat._checks import fail
from structmat.checkpoint import write_or_fail

__all__ = ["METRICS_LOG", "RunLog", "summary_writer_class"]

METRICS_LOG = "metrics.jsonl"


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        ValueError: the ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise fail(
            "tensorboard",
            "the tensorboard package (pip install tensorboard)",
            "none installed",
        ) from err
    return SummaryWriter


class RunLog:
    """metrics.jsonl in ``out_dir`` and, with ``tensorboard``, event files there.

    Args:
        out_dir: the run's directory.
        rows: the rows already recorded (the checkpoint's), written out at once.
        tensorboard: a directory for TensorBoard event files, or None.
        step: the step the run continues from; TensorBoard events after it (from
            a run that died before checkpointing them) are purged.
    """

    def __init__(
        self, out_dir: Path, rows: list[dict[str, Any]], tensorboard: str | None, step: int
    ) -> None:
        self.path = out_dir / METRICS_LOG
        text = "".join(json.dumps(row) + "\n" for row in rows).encode()
        write_or_fail(self.path, lambda f: f.write(text), "log")
        self.writer = None
        if tensorboard is not None:
            writer_class = summary_writer_class()
            self.writer = writer_class(tensorboard, purge_step=step if step else None)

    def append(self, row: dict[str, Any]) -> None:
        """Append one evaluation's row (flushed and fsynced: it survives a crash)."""
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise fail("out", f"room to append to {self.path}", str(err)) from err
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and value is not None:
                    self.writer.add_scalar(key, value, row["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
