"""ICSRec (Qin et al., "Intent Contrastive Learning with Cross Subsequences for Sequential Recommendation", WSDM
2024): subsequences that share a target carry the same intent, contrasted at two grains.

Every training prefix is a subsequence with its next item (this package's samples already are). For each sample
the partner is another training subsequence with the same target, possibly another user's (DuoRec's supervised
positive, :class:`~sracl_lightning.methods.duorec.SameTargetViews`); both are encoded (the sample once more, so its
dropout differs from the recommendation pass): ``z¹, z²`` (B, D).

* **Coarse-grain intent contrast** (CICL): NT-Xent between ``z¹`` and ``z²``, with the in-batch rows that share the
  target taken out of the negatives (the official ``--f_neg``, on in every official script).
* **Fine-grain intent contrast** (FICL): every training subsequence is encoded (eval mode) at each epoch's start
  and clustered by k-means into K intents (:class:`~sracl_lightning.methods.iclrec.Intents`, ``sequences:
  samples``); each view is contrasted with the L2-normalised centroid nearest to it, with the rows of the same
  intent taken out of the negatives.

    L_ICSRec = λ · CICL(z¹, z²) + β · (FICL(z¹, c¹) + FICL(z², c²))

every NT-Xent τ = 1, dot product. Defaults are the official Beauty and Sports scripts' (commit 3c8958f): λ = 0.3,
β = 0.1, K = 256.

NOTE: deviations from the official code: the partner is drawn uniformly among the same-target subsequences at every
step (the official code fixes one per sample, the last in file order whose input differs); the subsequences are
this package's training prefixes with windows of the run's length (the official code rebuilds them at length 50
and slides a window over users longer than 53); with no other same-target subsequence the partner is the sample
itself (the official code picks an identical one).

Shapes: B batch, L window, D hidden.
"""

from __future__ import annotations

from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import check_at_least
from sracl_lightning.methods.duorec import SameTargetInfoNCE, SameTargetViews
from sracl_lightning.methods.iclrec import Intents, named_arguments
from sracl_lightning.methods.parts import MethodDims, Objective, TrainingContext
from sracl_lightning.models.encoder import SequenceEncoder


class CrossSubsequenceContrast(Objective):
    """ICSRec's objective: coarse-grain (same-target) plus fine-grain (same-intent) contrast.

    ``weight`` scales the whole term (1 by default); the two grains carry their own weights, as in the official
    code.

    Args:
        dims: The module's sizes.
        weight: Scale of the whole term.
        coarse_weight: λ, of CICL (``lambda_0``: 0.3 in the Beauty and Sports scripts).
        fine_weight: β, of FICL (``beta_0``: 0.1).
        num_intents: K, the k-means clusters of the training subsequences (``intent_num``: 256).
        warm_up_epochs: Epochs with CICL alone before the first clustering (0).
        kmeans_iterations: Lloyd iterations per k-means run (20).
        kmeans_runs: k-means runs per clustering, the best kept (5).
        seed: k-means seed; ``None``: the run's seed.
        temperature: τ of both contrasts (1).
    """

    name = "icsrec"

    def __init__(self, dims: MethodDims, weight: float = 1.0, coarse_weight: float = 0.3, fine_weight: float = 0.1,
                 num_intents: int = 256, warm_up_epochs: int = 0, kmeans_iterations: int = 20,
                 kmeans_runs: int = 5, seed: int | None = None, temperature: float = 1.0) -> None:
        super().__init__(dims, weight)
        check_at_least("CrossSubsequenceContrast.coarse_weight", coarse_weight, 0)
        check_at_least("CrossSubsequenceContrast.fine_weight", fine_weight, 0)
        self.coarse_weight, self.fine_weight = coarse_weight, fine_weight
        self.views = SameTargetViews(dims)
        self.intents = named_arguments("CrossSubsequenceContrast", Intents, dims, num_intents=num_intents,
                                       sequences="samples", warm_up_epochs=warm_up_epochs,
                                       kmeans_iterations=kmeans_iterations, kmeans_runs=kmeans_runs, seed=seed)
        # Both grains mask their false negatives: the same target (CICL), the same intent (FICL).
        self.loss = SameTargetInfoNCE(temperature, "dot", mask_same_target=True)

    def setup(self, context: TrainingContext) -> None:
        self.views.setup(context)
        self.intents.setup(context)

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        self.intents.on_train_epoch_start(encoder)

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        first, second = self.views(batch, h, encoder)  # (B, D) each: the sample again, a same-target partner
        loss = self.coarse_weight * self.loss(first, second, batch.target)
        if self.intents.clustered and self.fine_weight > 0:
            for view in (first, second):
                intent, centroid = self.intents.assign(view)  # (B,), (B, D)
                loss = loss + self.fine_weight * self.loss(view, centroid, intent)
        return loss

    def describe(self) -> str:
        return (f"L_ICSRec ({self.coarse_weight}·coarse same-target + {self.fine_weight}·fine intent, "
                f"{self.intents.describe()}, τ={self.loss.temperature}, false negatives masked)")
