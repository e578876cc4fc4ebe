"""``SRACLModule``: one LightningModule that trains a sequence encoder with a recommendation loss plus weighted
objectives (SRA-CL, paper Eq. 12, docs/method.md#sra-cl), and evaluates it by full ranking.

``L = L_rec + Σ weight · objective``. SRA-CL is ``L_rec + α·L_CS + β·L_IS``: the recommendation loss, the inter-user
contrast against a synthesized positive (``user_contrast``,
:class:`~sracl_lightning.methods.user_contrast.UserContrast`) and the intra-user contrast between two semantically
substituted views (``item_contrast``,
:class:`~sracl_lightning.methods.views.ViewContrast`). A third slot, ``base_objective``, holds the base method's own
term that SRA-CL is plugged into (DuoRec's, :class:`~sracl_lightning.methods.duorec.DuoRecContrast`). With no
objective it is the backbone alone, the paper's "w/o CL" row. Inference uses the encoder alone.

Each slot is independent, so YAML overlays compose: one picks the cost mode (``user_contrast.neighbours``), another
the positive (``user_contrast.positive``), another the views (``item_contrast.views``), another the base method, and
stacking them never drops an earlier choice. Three ways to extend it:

* a new backbone: a :class:`~sracl_lightning.models.encoder.SequenceEncoder` subclass, as ``encoder``;
* a new objective, positive, neighbour source or view generator: a part of :mod:`sracl_lightning.methods`, named by
  ``class_path`` in a slot;
* a whole new method: a subclass overriding :meth:`loss_terms` (or :meth:`training_step`), :meth:`item_scores`
  or :meth:`protocol`, as MCLRec's alternating updates
  (:class:`~sracl_lightning.methods.mclrec_module.MetaOptimisedModule`: manual optimization, two optimizers) and
  S3-Rec's pre-training before fitting (:class:`~sracl_lightning.methods.s3rec_module.S3RecModule`) do.

Dimension letters: B batch, L window, D hidden, N items.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import DataMismatchError, InvalidArgumentError, UsageError, check_at_least
from sracl_lightning.methods.parts import MethodDims, Objective, ObjectiveFactory, TrainingContext
from sracl_lightning.methods.rec_losses import FullSoftmaxCrossEntropy, RecLoss
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.models.kernels import fused_kernels, fused_optimizer
from sracl_lightning.models.metrics import RankingMetrics
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.models.scoring import rank_targets, score_items

#: Builds an encoder from ``(num_items, max_len)``; in YAML, a ``class_path`` plus the other ``init_args``.
EncoderFactory = Callable[[int, int], SequenceEncoder]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]

#: The objective slots, in the order their terms are computed and logged.
OBJECTIVE_SLOTS = ("user_contrast", "item_contrast", "base_objective")


class SRACLModule(L.LightningModule):
    """A sequence encoder trained with a recommendation loss plus the objectives its config lists.

    Args:
        num_items: Number of items ``N``; linked from the DataModule.
        max_len: Window length ``L``; linked from the DataModule.
        encoder: The backbone, built as ``encoder(num_items, max_len)`` (SASRec by default).
        optimizer: Built as ``optimizer(parameters)`` (Adam, lr 1e-3, no weight decay in the paper).
        metric_ks: Cut-offs K of HR@K, NDCG@K and MRR@K.
        mask_seen_items: Exclude each user's already-seen items from the ranking (never the target itself).
            Off in the paper's protocol (docs/method.md#evaluation).
        semantic_dim: Width E of the frozen semantic vectors; linked from the DataModule's semantic profile.
        rec_loss: The recommendation loss (default: full-softmax cross-entropy, the paper's).
        user_contrast: SRA-CL's inter-user objective L_CS, built as ``user_contrast(dims)``
            (:class:`~sracl_lightning.methods.user_contrast.UserContrast`, weight α); ``None``: none.
        item_contrast: SRA-CL's intra-user objective L_IS (:class:`~sracl_lightning.methods.views.ViewContrast`,
            weight β); ``None``: none.
        base_objective: The base method's own objective, to which SRA-CL's are added (e.g.
            :class:`~sracl_lightning.methods.duorec.DuoRecContrast`); ``None``: none.
        fused_kernels: Train with the faster computations of :mod:`sracl_lightning.models.kernels` (the output
            layer fused with its loss and gradient, dropout by a uniform draw, the optimizer's fused step where torch
            has one); ``False``: PyTorch's eager ops and the optimizer's default implementation bit for bit, as runs
            made before they existed. Not part of the model: a checkpoint loads either way.
        compile_mode: ``torch.compile`` the encoder with this mode (``"default"``, ``"reduce-overhead"``: CUDA
            graphs on a GPU, ``"max-autotune"``); ``None`` (default): eager. In place (``nn.Module.compile``), so
            checkpoints are the same either way. Shapes are static: each new batch size (the last, smaller batch;
            evaluation batches) compiles once more. NOTE: off by default because on this project's CPU it did not
            pay (bench/results/SUMMARY.md); measure on your hardware before turning it on.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int = 20,
        encoder: EncoderFactory = SASRec,
        optimizer: OptimizerFactory = torch.optim.Adam,
        metric_ks: tuple[int, ...] = (5, 10, 20),
        mask_seen_items: bool = False,
        semantic_dim: int | None = None,
        rec_loss: RecLoss | None = None,
        user_contrast: ObjectiveFactory | None = None,
        item_contrast: ObjectiveFactory | None = None,
        base_objective: ObjectiveFactory | None = None,
        fused_kernels: bool = True,
        compile_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_at_least("model.init_args.num_items", num_items, 1)
        check_at_least("model.init_args.max_len", max_len, 1)
        if not metric_ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in metric_ks):
            raise InvalidArgumentError("model.init_args.metric_ks", list(metric_ks), "a non-empty list of ints >= 1")
        self.num_items = num_items
        self.max_len = max_len
        self.mask_seen_items = mask_seen_items
        self.fused_kernels = fused_kernels
        if compile_mode not in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise InvalidArgumentError("model.init_args.compile_mode", compile_mode,
                                       "null, default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs")
        self.compile_mode = compile_mode
        self.optimizer_factory = optimizer
        self.encoder = self.build_encoder(encoder)
        self.dims = MethodDims(num_items, max_len, self.encoder.hidden_size, semantic_dim)
        self.rec_loss = rec_loss or FullSoftmaxCrossEntropy()
        factories = {"user_contrast": user_contrast, "item_contrast": item_contrast,
                     "base_objective": base_objective}
        # Built here, not in setup(), so that a checkpoint's parameters have somewhere to load into.
        self.objectives = nn.ModuleDict({slot: self.build_objective(slot, factory)
                                         for slot, factory in factories.items() if factory is not None})
        names = [objective.name for objective in self.objectives.values()]
        if len(set(names)) != len(names) or "rec" in names:
            raise UsageError(f"two objectives log under the same name ({names}): give each slot another kind")
        self.val_metrics = RankingMetrics(metric_ks)
        self.test_metrics = RankingMetrics(metric_ks, keep_ranks=True)
        #: ``(users, ranks)`` of the last test, for per-user statistics (train.py writes them as test_ranks.npy).
        self.test_user_ranks: tuple[Tensor, Tensor] | None = None

    def build_encoder(self, factory: EncoderFactory) -> SequenceEncoder:
        encoder = factory(self.num_items, self.max_len)
        if not isinstance(encoder, SequenceEncoder):
            raise TypeError(f"encoder must build a SequenceEncoder, got {type(encoder).__name__}")
        return encoder

    def build_objective(self, slot: str, factory: ObjectiveFactory) -> Objective:
        try:
            objective = factory(self.dims)
        except InvalidArgumentError as error:  # name the slot: "model.init_args.user_contrast: UserContrast.weight"
            raise InvalidArgumentError(f"model.init_args.{slot}: {error.argument}", error.value,
                                       error.allowed) from None
        if not isinstance(objective, Objective):
            raise TypeError(f"model.init_args.{slot} must build an Objective, got {type(objective).__name__}")
        return objective

    def configure_model(self) -> None:
        """Compile the encoder in place when ``compile_mode`` asks for it (Lightning calls this on the target
        device, before the optimizers are built)."""
        if self.compile_mode is not None and not getattr(self.encoder, "_compiled_call_impl", None):
            self.encoder.compile(mode=self.compile_mode, dynamic=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Sequence representations ``h_u``: (B, L) -> (B, D). Inference uses the backbone alone."""
        return self.encoder(input_ids)

    def setup(self, stage: str) -> None:
        """Check that the data has this model's items; before fitting, hand the encoder and every objective the
        training data."""
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(val|test)/")
        data = self.trainer.datamodule
        data_items = getattr(data, "num_items", None)
        if data_items is not None and data_items != self.num_items:
            raise DataMismatchError(f"the model scores {self.num_items:,} items, but dataset "
                                    f"{getattr(data, 'name', '?')} has {data_items:,}: a checkpoint of another "
                                    "dataset or conversion?")
        reads_context = type(self.encoder).setup is not SequenceEncoder.setup
        if stage == "fit" and (len(self.objectives) or reads_context):
            context = self.training_context()
            self.encoder.setup(context)
            for objective in self.objectives.values():
                objective.setup(context)

    def training_context(self) -> TrainingContext:
        """The DataModule's :class:`TrainingContext`, on this module's device."""
        data = self.trainer.datamodule
        if data is None or not callable(getattr(data, "training_context", None)):
            raise UsageError("the model's objectives read the training data: fit with a DataModule that has "
                             "training_context() (SeqRecDataModule)")
        return data.training_context(self.device)

    # ----------------------------------------------------------------------------------------------- training
    def active_objectives(self) -> dict[str, Objective]:
        """The objectives whose weight is not 0 (the others keep their parameters but are not computed)."""
        return {slot: objective for slot, objective in self.objectives.items() if objective.weight > 0}

    def on_train_epoch_start(self) -> None:
        # The objectives' epoch work (a memory bank's rebuild, k-means over the windows' encodings) runs in the
        # training step's precision: bf16 under bf16-mixed, as the step itself.
        with self.trainer.precision_plugin.forward_context():
            for objective in self.active_objectives().values():
                objective.on_train_epoch_start(self.encoder)

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """Named, weighted loss terms (``"rec"`` and each objective's name); the training loss is their sum."""
        h = self(batch.input_ids)  # (B, D): the recommendation pass, shared with every objective
        terms = {"rec": self.rec_loss(batch, h, self.encoder)}
        for objective in self.active_objectives().values():
            terms[objective.name] = objective.weight * objective(batch, h, self.encoder)
        return terms

    def training_step(self, batch: SeqBatch, batch_idx: int) -> Tensor:
        with fused_kernels(self.fused_kernels):  # a subclass overriding training_step keeps this line
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
        return self.build_optimizer(self.optimizer_factory, self.parameters())

    def build_optimizer(self, factory: OptimizerFactory, parameters: Iterable[nn.Parameter],
                        argument: str = "model.init_args.optimizer") -> torch.optim.Optimizer:
        """``factory(parameters)``, with torch's fused step when ``fused_kernels`` is on
        (:func:`~sracl_lightning.models.kernels.fused_optimizer`); a bad value is named by its ``argument``."""
        try:  # torch validates lr, betas, ... only here
            optimizer = factory(parameters)
        except ValueError as error:
            raise UsageError(f"{argument}: {error}") from None
        return fused_optimizer(optimizer) if self.fused_kernels else optimizer

    # --------------------------------------------------------------------------------------------- evaluation
    def item_scores(self, h: Tensor, exclude: Tensor | None = None, keep: Tensor | None = None,
                    out: Tensor | None = None) -> Tensor:
        """Scores of all items (B, N) in fp32, ``-inf`` at the ``exclude`` columns but ``keep``'s.

        See :func:`sracl_lightning.models.scoring.score_items`, the rule evaluation, figures and serving share.

        Args:
            h: (B, D) user representations.
            exclude: (B, H) optional columns (item id - 1) to mask, ``-1`` for none.
            keep: (B,) optional column per row never masked (the evaluation target).
            out: optional (B, N) float32 buffer to write into.
        """
        return score_items(h, self.encoder.item_embeddings(), exclude, keep, out=out)

    def target_ranks(self, h: Tensor, target: Tensor, exclude: Tensor | None = None) -> Tensor:
        """1-based pessimistic ranks (B,) of the ``target`` columns under :meth:`item_scores`, computed block by block
        (:func:`~sracl_lightning.models.scoring.rank_targets`), never holding a (B, N) score matrix."""
        return rank_targets(h, target, self.item_scores, exclude)

    def _update_ranking(self, metric: RankingMetrics, batch: SeqBatch) -> None:
        exclude = None
        if self.mask_seen_items:
            if batch.history is None:
                raise ValueError("mask_seen_items needs evaluation batches that carry the history")
            exclude = batch.history - 1  # (B, H); padding 0 -> -1 = nothing to exclude
        target = batch.target - 1  # (B,)
        metric.update_ranks(self.target_ranks(self(batch.input_ids), target, exclude), batch.user)

    def validation_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._update_ranking(self.val_metrics, batch)

    def test_step(self, batch: SeqBatch, batch_idx: int) -> None:
        self._update_ranking(self.test_metrics, batch)

    def _log_ranking(self, stage: str, metric: RankingMetrics) -> None:
        values = metric.compute()  # synchronised across processes
        if metric.keep_ranks:
            self.test_user_ranks = metric.user_ranks()
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
            "loss": " + ".join([self.rec_loss.describe(), *(
                f"{objective.weight}·{objective.describe()}" for objective in self.active_objectives().values())]),
            "encoder": type(self.encoder).__name__,
        }


def format_protocol(protocol: dict[str, object]) -> str:
    return "; ".join(f"{key}={value}" for key, value in protocol.items())
