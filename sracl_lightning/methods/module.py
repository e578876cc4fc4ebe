"""``SRACLModule``: SRA-CL (paper Eq. 12, docs/method.md#sra-cl) around any sequence encoder, evaluated by full ranking.

``L = L_rec + α·L_CS + β·L_IS``: the recommendation loss, the inter-user contrastive loss against a synthesized
positive, and the intra-user contrastive loss between two semantically substituted views. With ``α = β = 0`` it is
the backbone alone, the paper's "w/o CL" row, and needs no semantic data. Inference uses the backbone alone.

Extension points, each a small method a subclass overrides:

* :meth:`loss_terms` returns the named, already weighted loss terms; ``training_step`` sums and logs them;
* :meth:`rec_loss`, :meth:`user_cl_loss` (L_CS), :meth:`item_cl_loss` (L_IS): one method per term;
* :meth:`anchor_hidden`, :meth:`neighbour_hidden`, :meth:`user_positive`, :meth:`substituted_views`: the inputs
  of the CL terms, where cheaper cost modes and ablations plug in; :meth:`build_synthesizer` builds the
  synthesizer;
* :meth:`item_scores` scores every item for evaluation; :meth:`protocol` describes the evaluation protocol.

Dimension letters: B batch, L window, D hidden, E semantic width, K neighbours, N items.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from sracl_lightning.batch import SeqBatch
from sracl_lightning.encoder import SequenceEncoder
from sracl_lightning.errors import (
    DataMismatchError,
    InvalidArgumentError,
    UsageError,
    check_at_least,
    check_in_range,
)
from sracl_lightning.losses import InfoNCE
from sracl_lightning.metrics import RankingMetrics
from sracl_lightning.sasrec import SASRec
from sracl_lightning.substitution import check_item_neighbours, substitute_items
from sracl_lightning.synthesizer import SampleSynthesizer

#: Builds an encoder from ``(num_items, max_len)``; in YAML, a ``class_path`` plus the other ``init_args``.
EncoderFactory = Callable[[int, int], SequenceEncoder]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class SRACLModule(L.LightningModule):
    """SRA-CL training of a sequence encoder (the backbone alone when both CL weights are 0).

    Args:
        num_items: Number of items ``N``; linked from the DataModule.
        max_len: Window length ``L``; linked from the DataModule.
        encoder: The backbone, built as ``encoder(num_items, max_len)`` (SASRec by default).
        optimizer: Built as ``optimizer(parameters)`` (Adam, lr 1e-3, no weight decay in the paper).
        metric_ks: Cut-offs K of HR@K, NDCG@K and MRR@K.
        mask_seen_items: Exclude each user's already-seen items from the ranking (never the target itself).
            Off in the paper's protocol (docs/method.md#evaluation).
        user_cl_weight: α, weight of the inter-user loss L_CS (paper and code: 0.1; 0 turns it off).
        item_cl_weight: β, weight of the intra-user loss L_IS (paper and code: 0.1; 0 turns it off).
        semantic_dim: Width E of the frozen semantic vectors; linked from the DataModule's semantic profile.
        synthesizer_dropout: Dropout on the synthesizer's attention weights. NOTE: 0 as in the paper; the released
            code applies 0.5 (docs/method.md#deviations, D19).
        substitution_probability: p, per-position probability of a semantic item substitution (0.2).
        user_cl_loss_fn: InfoNCE of L_CS (default: the released code's NT-Xent, τ = 1, dot product).
        item_cl_loss_fn: InfoNCE of L_IS (same default).
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        encoder: EncoderFactory = SASRec,
        optimizer: OptimizerFactory = torch.optim.Adam,
        metric_ks: tuple[int, ...] = (5, 10, 20),
        mask_seen_items: bool = False,
        user_cl_weight: float = 0.0,
        item_cl_weight: float = 0.0,
        semantic_dim: int | None = None,
        synthesizer_dropout: float = 0.0,
        substitution_probability: float = 0.2,
        user_cl_loss_fn: InfoNCE | None = None,
        item_cl_loss_fn: InfoNCE | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["user_cl_loss_fn", "item_cl_loss_fn"])
        check_at_least("model.init_args.num_items", num_items, 1)
        check_at_least("model.init_args.max_len", max_len, 1)
        if not metric_ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in metric_ks):
            raise InvalidArgumentError("model.init_args.metric_ks", list(metric_ks), "a non-empty list of ints >= 1")
        check_at_least("model.init_args.user_cl_weight", user_cl_weight, 0)
        check_at_least("model.init_args.item_cl_weight", item_cl_weight, 0)
        check_in_range("model.init_args.synthesizer_dropout", synthesizer_dropout, 0, 1, high_inclusive=False)
        check_in_range("model.init_args.substitution_probability", substitution_probability, 0, 1)
        self.num_items = num_items
        self.max_len = max_len
        self.mask_seen_items = mask_seen_items
        self.optimizer_factory = optimizer
        self.user_cl_weight, self.item_cl_weight = user_cl_weight, item_cl_weight
        self.substitution_probability = substitution_probability
        self.encoder = self.build_encoder(encoder)
        self.synthesizer = self.build_synthesizer(semantic_dim, synthesizer_dropout) if user_cl_weight > 0 else None
        self.user_cl_loss_fn = user_cl_loss_fn or InfoNCE()
        self.item_cl_loss_fn = item_cl_loss_fn or InfoNCE()
        # (N + 1, K) item neighbour ids for substitution: frozen data, set in setup(), never checkpointed.
        self.register_buffer("item_neighbours", torch.empty(0, 0, dtype=torch.int64), persistent=False)
        self.val_metrics = RankingMetrics(metric_ks)
        self.test_metrics = RankingMetrics(metric_ks)

    def build_encoder(self, factory: EncoderFactory) -> SequenceEncoder:
        encoder = factory(self.num_items, self.max_len)
        if not isinstance(encoder, SequenceEncoder):
            raise TypeError(f"encoder must build a SequenceEncoder, got {type(encoder).__name__}")
        return encoder

    def build_synthesizer(self, semantic_dim: int | None, dropout: float) -> SampleSynthesizer | None:
        """The learnable sample synthesizer of L_CS (Eqs. 6–8)."""
        if semantic_dim is None:
            raise UsageError("the inter-user loss (user_cl_weight > 0) needs semantic vectors: set "
                             "--data.semantic_profile (built by data/semantic.py), or user_cl_weight 0")
        return SampleSynthesizer(semantic_dim, self.encoder.hidden_size, attention_dropout=dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Sequence representations ``h_u``: (B, L) -> (B, D). Inference uses the backbone alone."""
        return self.encoder(input_ids)

    def setup(self, stage: str) -> None:
        """Check that the data has this model's items; fetch the frozen item neighbour table for L_IS from the
        DataModule's semantic profile."""
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(val|test)/")
        data = self.trainer.datamodule
        data_items = getattr(data, "num_items", None)
        if data_items is not None and data_items != self.num_items:
            raise DataMismatchError(f"the model scores {self.num_items:,} items, but dataset "
                                    f"{getattr(data, 'name', '?')} has {data_items:,}: a checkpoint of another "
                                    "dataset or conversion?")
        if stage != "fit" or self.item_cl_weight == 0:
            return
        if data is None or getattr(data, "semantic_profile", None) is None:
            raise UsageError("the intra-user loss (item_cl_weight > 0) needs item neighbours: set "
                             "--data.semantic_profile (built by data/semantic.py), or item_cl_weight 0")
        table = data.semantic.item_neighbours
        check_item_neighbours(table, self.num_items)
        self.item_neighbours = table.to(self.device)

    # ----------------------------------------------------------------------------------------------- training
    def rec_loss(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """Full-softmax cross-entropy over items 1..N (the padding id is never a class)."""
        logits = h @ self.encoder.item_embeddings().T  # (B, N)
        return F.cross_entropy(logits, batch.target - 1)

    def anchor_hidden(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """``h_u`` for L_CS (B, D). As the released code: a second pass, with its own dropout mask
        (docs/method.md#inter-user-loss)."""
        return self(batch.input_ids)

    def neighbour_hidden(self, batch: SeqBatch) -> Tensor:
        """``h_u'`` of the K retrieved prefixes (B, K, D): encoded with gradient every step, as the released code
        (the faithful, most expensive mode: B·K extra encoder passes)."""
        b, k, length = batch.neighbour_input_ids.shape
        return self(batch.neighbour_input_ids.reshape(b * k, length)).view(b, k, -1)  # (B, K, D)

    def user_positive(self, batch: SeqBatch) -> Tensor:
        """The synthesized positive ``h⁺_u`` (B, D): the synthesizer's weighted sum of the neighbours' ``h_u'``."""
        return self.synthesizer(batch.semantic, batch.neighbour_semantic, self.neighbour_hidden(batch))

    def user_cl_loss(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """L_CS (Eqs. 6–9): InfoNCE between ``h_u`` and its positive ``h⁺_u``."""
        if batch.neighbour_input_ids is None:
            raise UsageError("L_CS needs training batches with neighbours: set --data.semantic_profile")
        return self.user_cl_loss_fn(self.anchor_hidden(batch, h), self.user_positive(batch))  # (B, D) vs (B, D)

    def substituted_views(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Two views S', S'' of each window, each item replaced with probability p by a semantic neighbour."""
        if self.item_neighbours.numel() == 0:
            raise RuntimeError("item neighbours not loaded: L_IS runs inside trainer.fit with a semantic profile")
        return tuple(substitute_items(input_ids, self.item_neighbours, self.substitution_probability, check=False)
                     for _ in range(2))

    def item_cl_loss(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """L_IS (Eq. 11): InfoNCE between the encodings of two substituted views."""
        first, second = self.substituted_views(batch.input_ids)  # (B, L) each
        b = len(batch)
        views = self(torch.cat([first, second]))  # one encoder pass for both views: (2B, D)
        return self.item_cl_loss_fn(views[:b], views[b:])

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """Named, weighted loss terms; the training loss is their sum. A term with weight 0 is not computed."""
        h = self(batch.input_ids)  # (B, D)
        terms = {"rec": self.rec_loss(batch, h)}
        if self.user_cl_weight > 0:
            terms["user_cl"] = self.user_cl_weight * self.user_cl_loss(batch, h)
        if self.item_cl_weight > 0:
            terms["item_cl"] = self.item_cl_weight * self.item_cl_loss(batch, h)
        return terms

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        terms = self.loss_terms(batch)
        loss = torch.stack(list(terms.values())).sum()
        size = len(batch)
        # The step value is this rank's own (progress bar, step logs): no collective on the training path. Epoch
        # values are accumulated locally and synced once at the epoch's end: means over every rank's batches.
        self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        if len(terms) > 1:
            self.log_dict({f"train/{name}_loss_epoch": value for name, value in terms.items()}, on_step=False,
                          on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        try:
            return self.optimizer_factory(self.parameters())
        except ValueError as error:  # torch validates lr, betas, ... only here
            raise UsageError(f"model.init_args.optimizer: {error}") from None

    # --------------------------------------------------------------------------------------------- evaluation
    def item_scores(self, h: Tensor, exclude: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        """Scores of all items (B, N) in fp32, ``-inf`` at the ``exclude`` columns but ``keep``'s.

        See :func:`sracl_lightning.scoring.score_items`, the rule evaluation, figures and serving share.

        Args:
            h: (B, D) user representations.
            exclude: (B, H) optional columns (item id - 1) to mask, ``-1`` for none.
            keep: (B,) optional column per row never masked (the evaluation target).
        """
        from sracl_lightning.scoring import score_items

        return score_items(h, self.encoder.item_embeddings(), exclude, keep)

    def _update_ranking(self, metric: RankingMetrics, batch: SeqBatch) -> None:
        exclude = None
        if self.mask_seen_items:
            if batch.history is None:
                raise ValueError("mask_seen_items needs evaluation batches that carry the history")
            exclude = batch.history - 1  # (B, H); padding 0 -> -1 = nothing to exclude
        target = batch.target - 1  # (B,)
        metric.update(self.item_scores(self(batch.input_ids), exclude, keep=target), target)  # (B, N) scores

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
        # compute() already summed the states across ranks: every rank holds the same values, nothing to reduce
        # (Lightning's advice to sync epoch-level values is silenced for these keys in setup()).
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()})
        self.log(f"{stage}/users", float(count))

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
            "loss": "full-softmax cross-entropy" + (
                f" + {self.user_cl_weight}·L_CS + {self.item_cl_weight}·L_IS"
                if self.user_cl_weight or self.item_cl_weight else ""),
            "encoder": type(self.encoder).__name__,
        }


def format_protocol(protocol: dict[str, object]) -> str:
    return "; ".join(f"{key}={value}" for key, value in protocol.items())
