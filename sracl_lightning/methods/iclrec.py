"""ICLRec (Chen et al., "Intent Contrastive Learning for Sequential Recommendation", WWW 2022): the users' latent
intents as k-means clusters of their sequence representations, and an intent contrast beside CL4SRec's.

At the start of every training epoch (from ``warm_up_epochs`` on) the encoder, in eval mode and without gradient,
encodes each user's training sequence (the input of the user's last training sample, ``items[:-3]``) and faiss's
k-means groups the U vectors into K intents (:func:`~sracl_lightning.semantic.neighbours.kmeans`; 20 iterations,
5 runs, warm-started from the previous epoch's centroids as the official code's reused ``Clustering`` is). In a
training batch, each sample's intent is the centroid nearest (Euclidean) to its recommendation representation
``h`` (detached), L2-normalised: ``c_b`` (B, D). With two CL4SRec views ``z¹, z²`` of each window:

    L_ICLRec = λ_cl · NTXent(z¹, z²) + λ_int · ½ (NTXent(z¹, c) + NTXent(z², c))

every NT-Xent the official code's (τ = 1, dot product, the 2B − 2 other rows as negatives; the centroids are
constants). Defaults are the official run scripts' (commit 2890e6c): K = 256, λ_cl = λ_int = 0.1 (``main.py``'s
default λ_int is 0.3), views crop 0.2 / mask 0.7 / reorder 0.2.

NOTE: the official code represents a sequence by the mean of its outputs over all 50 positions (padding included)
for the intents and by the flattened outputs for the instance contrast; here both are the encoder's representation
``h`` (the last position), the one vector every backbone of this package returns. The views act on the window, as
in :mod:`~sracl_lightning.methods.cl4srec`, and mask with the encoder's mask token (the official code writes 0). The
official false-negative option (``de_noise``) is off in every official script and is not built.

Shapes: B batch, L window, U users, K intents, D hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from sracl_lightning.datasets.batch import SeqBatch
from sracl_lightning.errors import InvalidArgumentError, UsageError, check_at_least
from sracl_lightning.methods.cl4srec import CL4SRecAugmentations
from sracl_lightning.methods.losses import InfoNCE
from sracl_lightning.methods.parts import MethodDims, Objective, Part, TrainingContext
from sracl_lightning.methods.views import ViewGenerator
from sracl_lightning.models.encoder import SequenceEncoder
from sracl_lightning.semantic.neighbours import kmeans


def last_training_windows(samples) -> Tensor:
    """Each user's training sequence as one window (U', L): the input of the user's last training sample."""
    order = torch.arange(len(samples), dtype=torch.int64)
    last = torch.full((int(samples.users.max()) + 1,), -1, dtype=torch.int64).scatter_reduce(
        0, samples.users, order, "amax")  # (U,) index of each user's last training sample, -1 without one
    return samples.input_windows(last[last >= 0])


def nearest_centroids(h: Tensor, centroids: Tensor) -> Tensor:
    """Index (B,) of the centroid (K, D) nearest to each row of ``h`` (B, D) in Euclidean distance."""
    distances = (centroids * centroids).sum(1)[None, :] - 2 * h @ centroids.T  # (B, K), ‖h‖² dropped
    return distances.argmin(1)


class Intents(Part):
    """K-means intents of sequence representations, re-clustered at the start of every epoch.

    The encoder, in eval mode and without gradient, encodes the chosen training windows; faiss's k-means
    (:func:`~sracl_lightning.semantic.neighbours.kmeans`) clusters them, warm-started from the previous epoch's
    centroids. :meth:`assign` maps representations to their nearest centroid (Euclidean) and returns it
    L2-normalised, a constant.

    Args:
        dims: The module's sizes.
        num_intents: K.
        sequences: What is clustered: ``"users"``, each user's training sequence (ICLRec), or ``"samples"``, every
            training sample's window (ICSRec's subsequences).
        warm_up_epochs: Epochs before the first clustering.
        kmeans_iterations: Lloyd iterations per k-means run.
        kmeans_runs: k-means runs per clustering, the best kept.
        seed: k-means seed; ``None``: the run's seed (``torch.initial_seed()``), as the official codes' ``args.seed``.
    """

    def __init__(self, dims: MethodDims, num_intents: int = 256, sequences: Literal["users", "samples"] = "users",
                 warm_up_epochs: int = 0, kmeans_iterations: int = 20, kmeans_runs: int = 5,
                 seed: int | None = None) -> None:
        super().__init__(dims)
        check_at_least("num_intents", num_intents, 1)
        check_at_least("warm_up_epochs", warm_up_epochs, 0)
        check_at_least("kmeans_iterations", kmeans_iterations, 1)
        check_at_least("kmeans_runs", kmeans_runs, 1)
        if sequences not in ("users", "samples"):
            raise InvalidArgumentError("sequences", sequences, "'users' or 'samples'")
        self.num_intents, self.sequences, self.warm_up_epochs = num_intents, sequences, warm_up_epochs
        self.kmeans_iterations, self.kmeans_runs, self.seed = kmeans_iterations, kmeans_runs, seed
        # (M, L) the clustered windows: frozen data, set in setup(), never checkpointed.
        self.register_buffer("windows", torch.empty(0, 0, dtype=torch.int64), persistent=False)
        # The centroids and the epochs started are checkpointed: a resumed run warm-starts k-means from the same
        # centroids, and clusters from the same epoch on, as the unbroken run.
        self.register_buffer("centroids", torch.zeros(num_intents, dims.hidden_size))
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.int64))

    def setup(self, context: TrainingContext) -> None:
        samples = context.train_samples
        if self.sequences == "users":
            windows = last_training_windows(samples)
        else:
            windows = samples.input_windows(torch.arange(len(samples)))
        if len(windows) < self.num_intents:
            raise UsageError(f"num_intents is {self.num_intents}, but only {len(windows)} {self.sequences} have a "
                             f"training window to cluster: set num_intents to at most {len(windows)}")
        self.windows = windows.to(context.device)

    @property
    def clustered(self) -> bool:
        """Whether the intents exist (an epoch at or after ``warm_up_epochs`` has started)."""
        return int(self.epochs_started) > self.warm_up_epochs

    @torch.no_grad()
    def cluster(self, encoder: SequenceEncoder, batch_size: int = 1024) -> None:
        """Encode every clustered window in eval mode and re-cluster (warm-started once clustered)."""
        if self.windows.numel() == 0:
            raise RuntimeError("windows not loaded: the intents are clustered inside trainer.fit")
        was_training = encoder.training
        encoder.eval()
        try:
            vectors = torch.cat([encoder(self.windows[first:first + batch_size]).float()
                                 for first in range(0, len(self.windows), batch_size)])  # (M, D)
        finally:
            encoder.train(was_training)
        initial = self.centroids.cpu().numpy() if self.clustered else None
        seed = self.seed if self.seed is not None else torch.initial_seed() % (2 ** 31)
        centroids = kmeans(vectors.cpu().numpy(), self.num_intents, niter=self.kmeans_iterations,
                           nredo=self.kmeans_runs, seed=seed, initial=initial)
        self.centroids.copy_(torch.from_numpy(centroids))

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        if int(self.epochs_started) >= self.warm_up_epochs:
            self.cluster(encoder)
        self.epochs_started += 1

    def assign(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Each row's intent: its index (B,) and its L2-normalised centroid (B, D) as a float32 constant."""
        centroids = self.centroids.to(h.dtype)
        index = nearest_centroids(h.detach(), centroids)  # (B,)
        return index, torch.nn.functional.normalize(centroids[index].float(), dim=1)

    def describe(self) -> str:
        return f"K={self.num_intents} k-means intents of the {self.sequences}' windows"


class IntentContrast(Objective):
    """ICLRec's objective: instance contrast between two views plus each view's contrast with its intent.

    ``weight`` scales the whole term (1 by default); the two parts carry their own weights, as in the official code.

    Args:
        dims: The module's sizes.
        weight: Scale of the whole term.
        instance_weight: λ_cl, of NT-Xent between the two views (``cf_weight`` 0.1).
        intent_weight: λ_int, of the intent contrast (``intent_cf_weight``, 0.1 in the official scripts).
        num_intents: K, the k-means clusters of the users' training sequences (256).
        warm_up_epochs: Epochs trained with the instance contrast alone before the first clustering (0).
        kmeans_iterations: Lloyd iterations per k-means run (20).
        kmeans_runs: k-means runs per clustering, the best kept (5).
        seed: k-means seed; ``None``: the run's seed.
        views: The view generator (default: CL4SRec's crop / mask / reorder).
        loss: The NT-Xent of both parts (default τ = 1, dot product).
    """

    name = "iclrec"

    def __init__(self, dims: MethodDims, weight: float = 1.0, instance_weight: float = 0.1,
                 intent_weight: float = 0.1, num_intents: int = 256, warm_up_epochs: int = 0,
                 kmeans_iterations: int = 20, kmeans_runs: int = 5, seed: int | None = None,
                 views: Callable[[MethodDims], ViewGenerator] = CL4SRecAugmentations,
                 loss: InfoNCE | None = None) -> None:
        super().__init__(dims, weight)
        check_at_least("IntentContrast.instance_weight", instance_weight, 0)
        check_at_least("IntentContrast.intent_weight", intent_weight, 0)
        self.instance_weight, self.intent_weight = instance_weight, intent_weight
        self.intents = named_arguments("IntentContrast", Intents, dims, num_intents=num_intents, sequences="users",
                                       warm_up_epochs=warm_up_epochs, kmeans_iterations=kmeans_iterations,
                                       kmeans_runs=kmeans_runs, seed=seed)
        self.views = views(dims)
        self.loss = loss or InfoNCE()

    def setup(self, context: TrainingContext) -> None:
        self.views.setup(context)
        self.intents.setup(context)

    def on_train_epoch_start(self, encoder: SequenceEncoder) -> None:
        self.views.on_train_epoch_start(encoder)
        self.intents.on_train_epoch_start(encoder)

    def forward(self, batch: SeqBatch, h: Tensor, encoder: SequenceEncoder) -> Tensor:
        first, second = self.views(batch, h, encoder)  # (B, D) each
        loss = self.instance_weight * self.loss(first, second)
        if self.intents.clustered and self.intent_weight > 0:
            _, intents = self.intents.assign(h)  # (B, D): each sample's intent, from its recommendation pass
            loss = loss + self.intent_weight * 0.5 * (self.loss(first, intents) + self.loss(second, intents))
        return loss

    def describe(self) -> str:
        return (f"L_ICLRec ({self.instance_weight}·instance + {self.intent_weight}·intent, "
                f"K={self.intents.num_intents}, {self.views.describe()}, {self.loss.extra_repr()})")


def named_arguments(owner: str, factory: Callable[..., Part], dims: MethodDims, **kwargs) -> Part:
    """``factory(dims, **kwargs)``, its argument errors named as ``owner``'s (``IntentContrast.num_intents``)."""
    try:
        return factory(dims, **kwargs)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"{owner}.{error.argument}", error.value, error.allowed) from None
