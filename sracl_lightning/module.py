"""``SRACLModule``: the LightningModule that trains a sequence encoder and evaluates it by full ranking.

At this stage it holds the backbone and its recommendation loss, which is the paper's "w/o CL" row (Table 2).
Extension points, each a small method a subclass overrides:

* :meth:`loss_terms` returns the named, already weighted loss terms; ``training_step`` sums and logs them;
* :meth:`rec_loss` is the recommendation loss (full-softmax cross-entropy over all items, SPEC §1.1);
* :meth:`item_scores` scores every item for evaluation;
* :meth:`protocol` describes the evaluation protocol printed with every result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from sracl_lightning.batch import SeqBatch
from sracl_lightning.encoder import SequenceEncoder
from sracl_lightning.metrics import RankingMetrics
from sracl_lightning.sasrec import SASRec

#: Builds an encoder from ``(num_items, max_len)``; in YAML, a ``class_path`` plus the other ``init_args``.
EncoderFactory = Callable[[int, int], SequenceEncoder]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class SRACLModule(L.LightningModule):
    """Sequential recommender trained with full-softmax cross-entropy, evaluated by full ranking.

    Args:
        num_items: Number of items ``N``; linked from the DataModule.
        max_len: Window length ``L``; linked from the DataModule.
        encoder: The backbone, built as ``encoder(num_items, max_len)`` (SASRec by default).
        optimizer: Built as ``optimizer(parameters)`` (Adam, lr 1e-3, no weight decay in the paper).
        metric_ks: Cut-offs K of HR@K, NDCG@K and MRR@K.
        mask_seen_items: Exclude each user's already-seen items from the ranking (never the target itself).
            Off in the paper's protocol (SPEC §2.2).
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        encoder: EncoderFactory = SASRec,
        optimizer: OptimizerFactory = torch.optim.Adam,
        metric_ks: tuple[int, ...] = (5, 10, 20),
        mask_seen_items: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_items = num_items
        self.max_len = max_len
        self.mask_seen_items = mask_seen_items
        self.optimizer_factory = optimizer
        self.encoder = self.build_encoder(encoder)
        self.val_metrics = RankingMetrics(metric_ks)
        self.test_metrics = RankingMetrics(metric_ks)

    def build_encoder(self, factory: EncoderFactory) -> SequenceEncoder:
        encoder = factory(self.num_items, self.max_len)
        if not isinstance(encoder, SequenceEncoder):
            raise TypeError(f"encoder must build a SequenceEncoder, got {type(encoder).__name__}")
        return encoder

    def forward(self, input_ids: Tensor) -> Tensor:
        """Sequence representations ``h_u``: (B, L) -> (B, D). Inference uses the backbone alone."""
        return self.encoder(input_ids)

    # ----------------------------------------------------------------------------------------------- training
    def rec_loss(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """Full-softmax cross-entropy over items 1..N (the padding id is never a class)."""
        logits = h @ self.encoder.item_embeddings().T  # (B, N)
        return F.cross_entropy(logits, batch.target - 1)

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """Named, weighted loss terms; the training loss is their sum."""
        return {"rec": self.rec_loss(batch, self(batch.input_ids))}

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        terms = self.loss_terms(batch)
        loss = torch.stack(list(terms.values())).sum()
        size = len(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        if len(terms) > 1:
            self.log_dict({f"train/{name}_loss": value for name, value in terms.items()}, on_epoch=True,
                          batch_size=size)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    # --------------------------------------------------------------------------------------------- evaluation
    def item_scores(self, h: Tensor) -> Tensor:
        """Scores of all items (B, N), in fp32 even under mixed precision: bf16 would create spurious ties."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            return h.float() @ self.encoder.item_embeddings().float().T

    def _update_ranking(self, metric: RankingMetrics, batch: SeqBatch) -> None:
        scores = self.item_scores(self(batch.input_ids))  # (B, N)
        exclude = None
        if self.mask_seen_items:
            if batch.history is None:
                raise ValueError("mask_seen_items needs evaluation batches that carry the history")
            exclude = batch.history - 1  # (B, H); padding 0 -> -1 = nothing to exclude
        metric.update(scores, batch.target - 1, exclude)

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._update_ranking(self.val_metrics, batch)

    def test_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._update_ranking(self.test_metrics, batch)

    def _log_ranking(self, stage: str, metric: RankingMetrics) -> None:
        values = metric.compute()  # synchronised across processes
        metric.reset()
        count = int(values.pop("count"))
        expected = getattr(self.trainer.datamodule, "num_users", None) if self._trainer is not None else None
        if expected is not None and count > expected:
            raise RuntimeError(f"{stage}: {count} users evaluated but the dataset has {expected}; "
                               "some users were counted twice (a padding distributed sampler?)")
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()}, sync_dist=True)
        self.log(f"{stage}/users", float(count), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_ranking("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_ranking("test", self.test_metrics)
        rank_zero_info(f"Protocol: {format_protocol(self.protocol())}")

    def protocol(self) -> dict[str, object]:
        """What the numbers mean; printed and saved next to every result."""
        return {
            "split": "leave-one-out (val target items[-2], test target items[-1])",
            "max_len": self.max_len,
            "ranking": f"full ranking over all {self.num_items} items; an item scoring equal to the target "
                       "ranks above it",
            "mask_seen_items": self.mask_seen_items,
            "loss": "full-softmax cross-entropy",
            "encoder": type(self.encoder).__name__,
        }


def format_protocol(protocol: dict[str, object]) -> str:
    return "; ".join(f"{key}={value}" for key, value in protocol.items())
