"""DDP-friendly logging: no collective per training step, only epoch aggregates are reduced."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.training.datamodule import SeqRecDataModule

pytestmark = pytest.mark.integration


def _reduce_calls(synthetic_reviews, tmp_path, steps: int) -> int:
    """How often the strategy's ``reduce`` (the all-reduce under DDP) runs in one epoch of ``steps`` steps."""
    data = SeqRecDataModule(dataset=str(synthetic_reviews), data_root=str(tmp_path / "processed"), batch_size=16)
    model = SRACLModule(num_items=data.num_items, max_len=20,
                        encoder=lambda n, length: SASRec(n, length, hidden_size=16, num_layers=1, num_heads=1,
                                                         inner_size=16))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps, limit_val_batches=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    calls = []
    original = trainer.strategy.reduce

    def counting(tensor, *args, **kwargs):
        calls.append(1)
        return original(tensor, *args, **kwargs)

    trainer.strategy.reduce = counting
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
    return len(calls)


def test_training_steps_issue_no_collective(synthetic_reviews, tmp_path) -> None:
    """Twice the steps, the same number of reductions: they happen at the epoch's end, never per step."""
    few, many = _reduce_calls(synthetic_reviews, tmp_path, 2), _reduce_calls(synthetic_reviews, tmp_path, 6)
    assert few == many
    assert few <= 4  # the epoch loss (value and batch count) and the epoch timers; the metrics are not reduced again
