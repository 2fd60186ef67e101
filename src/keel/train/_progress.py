"""A rich progress bar over the epochs of a torch training run, fed by ``on_epoch``.

Use::

    with EpochProgress(epochs=30, label="train torch-cnn") as bar:
        train(store, "digits", "y", model="torch-cnn", on_epoch=bar)

Each record moves the bar one epoch and shows the training loss, the validation loss and
the validation metric, named (``val_roc_auc`` for two classes, ``val_accuracy`` for more,
``val_rmse`` for a regression). Early stopping leaves the bar short of ``epochs``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EpochProgress", "epoch_metric"]

#: The validation metric an epoch record is shown (and pruned) by, in order of preference.
_METRICS = ("val_roc_auc", "val_accuracy", "val_rmse")


def epoch_metric(record: dict[str, Any]) -> str | None:
    """The name of the validation metric in an epoch ``record`` (None when it has none)."""
    return next((m for m in _METRICS if m in record), None)


class EpochProgress:
    """A callable for ``on_epoch`` that draws each epoch on a rich progress bar (on stderr
    through rich's console; nothing is drawn when ``enabled`` is false)."""

    def __init__(self, epochs: int, label: str = "train", enabled: bool = True) -> None:
        self.epochs, self.label, self.enabled = epochs, label, enabled
        self.records: list[dict[str, Any]] = []
        self._p: Any = None

    def __enter__(self) -> EpochProgress:
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=10),
            TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
        )
        self._p.start()
        self._task = self._p.add_task(self.label, total=self.epochs, losses="")
        return self

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))
        if self._p is not None:
            self._p.update(self._task, completed=int(record["epoch"]), losses=describe(record))

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def describe(record: dict[str, Any]) -> str:
    """``train loss 0.312  val loss 0.2981  val_accuracy 0.951`` for one epoch record (four
    significant digits)."""
    parts = [f"train loss {record['train_loss']:.4g}", f"val loss {record['val_loss']:.4g}"]
    metric = epoch_metric(record)
    if metric is not None:
        parts.append(f"{metric} {record[metric]:.4g}")
    return "  ".join(parts)
