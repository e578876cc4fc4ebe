"""S3-Rec (Zhou et al., "S3-Rec: Self-Supervised Learning for Sequential Recommendation with Mutual Information
Maximization", CIKM 2020; official code RUCAIBox/CIKM2020-S3Rec at 2a81540): self-supervised pre-training of the
SASRec encoder with bidirectional attention, then ordinary fine-tuning.

Pre-training sequences are the training prefixes *with* their target (the official ``PretrainDataset``: every
prefix of each user's training part, the last L items), ``s = [v_1, ..., v_n]``, encoded bidirectionally (padding
keys masked, no causal mask) by the fine-tuning encoder's own blocks: ``F = enc↔(s')`` (B, L, D).

* **MIP** (masked item prediction): every item but the last is replaced by the ``mask`` token with probability
  ρ = 0.2, the last always; at each masked position t, with a negative item v⁻ not in s,
  ``ℓ = BCE(σ(σ(⟨W_MIP F_t, e_{v_t}⟩) − σ(⟨W_MIP F_t, e_{v⁻}⟩)), 1)``.
* **SP** (segment prediction): a random segment of 1..⌊n/2⌋ items is masked out of s; the masked sequence's last
  output ``c``, the segment alone (every other position masked) ``s⁺`` and a segment of the same length from
  elsewhere in the training data ``s⁻`` (last outputs) give ``ℓ = BCE(σ(σ(⟨W_SP c, s⁺⟩) − σ(⟨W_SP c, s⁻⟩)), 1)``.
* **AAP** (associated attribute prediction), where the data has item attributes (``<Name>_item2attributes.json``):
  at every unmasked item, ``BCE(σ(⟨W_AAP F_t, a_j⟩), [j ∈ attributes(v_t)])`` over all attributes j;
* **MAP** (masked attribute prediction): the same at the masked positions, with ``W_MAP``.

``L_pre = w_AAP Σ ℓ_AAP + w_MIP Σ ℓ_MIP + w_MAP Σ ℓ_MAP + w_SP Σ ℓ_SP``, summed as in the official code and divided
by the batch size (the official weights: AAP 0.2, MIP 1.0, MAP 1.0, SP 0.5). Without an attribute file (Office and
the paper's Yelp have none here) AAP and MAP are off and the protocol says so. Pre-training runs
``pretrain_epochs`` epochs before the first fine-tuning epoch
(:class:`~sracl_lightning.methods.s3rec_module.S3RecModule`); fine-tuning is the ordinary causal SASRec with the
module's recommendation loss.

NOTE: deviations from the official code: on datasets without an attribute file, pre-training is MIP + SP only;
pre-training batches are the fine-tuning batch size (the official ``pre_batch_size`` is 100); sums are divided by
the batch size (the same relative weights, a loss independent of the batch size); SP's negative segment comes from
the flat training array (the official code: from the concatenation of all users' sequences); ``pretrain_epochs``
defaults to 100 (the official run script pre-trains 300 epochs and its reproduction fine-tunes from epoch 150 on
Beauty, 100 on Sports).

Shapes: B batch, L window, D hidden, N items, T flat interactions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sracl_lightning.datasets.samples import SequenceSamples, right_aligned_windows
from sracl_lightning.errors import InvalidArgumentError, UsageError, check_at_least, check_in_range
from sracl_lightning.methods.parts import MethodDims, Part, TrainingContext
from sracl_lightning.methods.rec_losses import sample_negatives
from sracl_lightning.models.sasrec import MASK_VALUE, SASRec


def bidirectional_states(encoder: SASRec, ids: Tensor) -> Tensor:
    """The encoder's blocks over (B, L) ids with padding keys masked and no causal mask: (B, L, D)."""
    keep = (ids != 0)[:, None, None, :].expand(-1, 1, ids.shape[1], -1)  # (B, 1, L, L)
    bias = torch.zeros(keep.shape, device=ids.device).masked_fill_(~keep, MASK_VALUE)
    x = encoder.embed(ids)
    for block in encoder.blocks:
        x = block(x, x, bias)
    return x


def pairwise_bce(positive: Tensor, negative: Tensor) -> Tensor:
    """The official ``BCE(σ(p − n), 1)`` of sigmoid scores p, n, summed: ``Σ softplus(−(p − n))``."""
    return F.softplus(-(positive - negative)).sum()


def segment_masks(ids: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool: a random contiguous segment of 1..⌊n/2⌋ of each row's n real items (none when n < 2)."""
    b, width = ids.shape
    n = (ids != 0).sum(1)  # (B,)
    most = (n // 2).clamp_min(1)
    length = (torch.rand(b, generator=generator, device=ids.device) * most).long() + 1  # (B,) in 1..⌊n/2⌋
    start = (torch.rand(b, generator=generator, device=ids.device) * (n - length + 1)).long()
    start = torch.minimum(start, n - length) + (width - n)  # (B,) first position of the segment
    j = torch.arange(width, device=ids.device)[None, :]
    return (j >= start[:, None]) & (j < (start + length)[:, None]) & (n >= 2)[:, None]


class S3RecPretraining(Part):
    """S3-Rec's MIP and SP pre-training objectives over a SASRec encoder (bidirectional during pre-training).

    Args:
        dims: The module's sizes.
        mask_ratio: ρ, the probability that an item (but the last, always masked) is masked for MIP (0.2).
        mip_weight: Weight of MIP (1.0).
        sp_weight: Weight of SP (0.5).
        attributes: The item-attribute file, ``{item id: [attribute ids 1..A-1], ...}`` as JSON
            (``<Name>_item2attributes.json``); ``None``: no attribute objectives.
        num_attributes: A, the attribute ids' bound (the official ``attribute_size``: largest id + 1); needed with
            ``attributes``.
        item_ids: A TSV mapping the dataset's item ids (first column) to the attribute file's (second), for files
            numbered otherwise (``sracl/Beauty_sracl_to_coserec_item_id.tsv``); ``None``: the same ids.
        aap_weight: Weight of AAP (0.2).
        map_weight: Weight of MAP (1.0).
    """

    def __init__(self, dims: MethodDims, mask_ratio: float = 0.2, mip_weight: float = 1.0, sp_weight: float = 0.5,
                 attributes: str | None = None, num_attributes: int = 0, item_ids: str | None = None,
                 aap_weight: float = 0.2, map_weight: float = 1.0) -> None:
        super().__init__(dims)
        check_in_range("S3RecPretraining.mask_ratio", mask_ratio, 0, 1, high_inclusive=False)
        for name, value in (("mip_weight", mip_weight), ("sp_weight", sp_weight), ("aap_weight", aap_weight),
                            ("map_weight", map_weight)):
            check_at_least(f"S3RecPretraining.{name}", value, 0)
        if attributes is not None and num_attributes < 2:
            raise InvalidArgumentError("S3RecPretraining.num_attributes", num_attributes,
                                       ">= 2 with an attributes file (its largest attribute id + 1)")
        self.mask_ratio, self.mip_weight, self.sp_weight = mask_ratio, mip_weight, sp_weight
        self.attributes_path, self.item_ids_path = attributes, item_ids
        self.num_attributes = num_attributes if attributes is not None else 0
        self.aap_weight, self.map_weight = aap_weight, map_weight
        hidden = dims.hidden_size
        self.mip_head, self.sp_head = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)  # W_MIP, W_SP
        heads = [self.mip_head, self.sp_head]
        if self.num_attributes:
            self.attribute_embedding = nn.Embedding(self.num_attributes, hidden, padding_idx=0)  # (A, D)
            self.aap_head, self.map_head = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)  # W_AAP, W_MAP
            heads += [self.attribute_embedding, self.aap_head, self.map_head]
        for layer in heads:  # the official init: N(0, 0.02), bias 0
            nn.init.normal_(layer.weight, std=0.02)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        self.register_buffer("items", torch.empty(0, dtype=torch.int64), persistent=False)  # (T,) flat items
        # (N + 1, A) bool: the attributes of each item (none for padding); set in setup().
        self.register_buffer("item_attributes", torch.empty(0, 0, dtype=torch.bool), persistent=False)

    def setup(self, context: TrainingContext) -> None:
        self.items = context.train_samples.items.to(context.device)
        if self.num_attributes:
            if context.item_tokens is None:
                raise UsageError("S3-Rec's attribute objectives need the items' source ids (a SeqRecDataModule)")
            self.item_attributes = read_item_attributes(self.attributes_path, self.num_attributes,
                                                        context.item_tokens, self.item_ids_path).to(context.device)

    @staticmethod
    def sequences(samples: SequenceSamples, indices: Tensor) -> Tensor:
        """(B, L) pre-training sequences: the last L items of training samples ``indices`` up to *and with* their
        target."""
        return right_aligned_windows(samples.items, samples.positions[indices] + 1, samples.starts[indices],
                                     samples.max_len)

    def mip_inputs(self, ids: Tensor, mask_id: int) -> tuple[Tensor, Tensor]:
        """``(masked ids, chosen)``: (B, L) each; every real item but the last masked w.p. ρ, the last always."""
        real = ids != 0
        chosen = real & (torch.rand(ids.shape, device=ids.device) < self.mask_ratio)
        chosen[:, -1] = real[:, -1]
        return torch.where(chosen, mask_id, ids), chosen

    def forward(self, ids: Tensor, encoder: SASRec) -> Tensor:
        """The pre-training loss of (B, L) sequences (their last item real)."""
        if not isinstance(encoder, SASRec):
            raise UsageError("S3-Rec pre-trains a SASRec encoder (its blocks, bidirectionally)")
        if self.items.numel() == 0:
            raise RuntimeError("training items not loaded: S3-Rec pre-trains inside trainer.fit")
        mask_id = encoder.token_id("mask")
        b = ids.shape[0]
        weight = encoder.item_embedding.weight  # (N + 1 + T, D)
        loss = ids.new_zeros((), dtype=torch.float32)
        attributes = self.num_attributes > 0 and (self.aap_weight > 0 or self.map_weight > 0)
        if self.mip_weight > 0 or attributes:
            masked, chosen = self.mip_inputs(ids, mask_id)  # (B, L) each
            states = bidirectional_states(encoder, masked)  # (B, L, D): MIP, AAP and MAP read the same pass
        if self.mip_weight > 0:
            predicted = self.mip_head(states[chosen])  # (M, D)
            targets = ids[chosen]  # (M,)
            rows = chosen.nonzero()[:, 0]  # (M,) the row of each masked position
            negatives = sample_negatives(ids, encoder.num_items, 1)[rows, 0]  # (M,) outside the row's window
            positive = torch.sigmoid((predicted * weight[targets]).sum(-1))
            negative = torch.sigmoid((predicted * weight[negatives]).sum(-1))
            loss = loss + self.mip_weight * pairwise_bce(positive.float(), negative.float())
        if attributes:
            loss = loss + self.attribute_losses(ids, states, chosen)
        if self.sp_weight > 0:
            segment = segment_masks(ids)  # (B, L)
            length = segment.sum(1)  # (B,)
            offset = segment.float().argmax(1)  # (B,) first position of the segment (0 where there is none)
            draw = (torch.rand(b, device=ids.device) * (len(self.items) - length + 1)).long()  # (B,)
            j = torch.arange(ids.shape[1], device=ids.device)[None, :]
            elsewhere = self.items[(draw[:, None] + j - offset[:, None]).clamp(0, len(self.items) - 1)]  # (B, L)
            real = ids != 0
            context = torch.where(segment, mask_id, ids)
            positive_segment = torch.where(segment, ids, torch.where(real, mask_id, 0))
            negative_segment = torch.where(segment, elsewhere, torch.where(real, mask_id, 0))
            short = (real.sum(1) < 2)[:, None]  # the official code's degenerate case: all three are s
            context, positive_segment, negative_segment = (torch.where(short, ids, x) for x in
                                                           (context, positive_segment, negative_segment))
            last = bidirectional_states(encoder, torch.cat([context, positive_segment, negative_segment]))[:, -1]
            c, s_pos, s_neg = self.sp_head(last[:b]), last[b:2 * b], last[2 * b:]  # (B, D) each
            positive = torch.sigmoid((c * s_pos).sum(-1))
            negative = torch.sigmoid((c * s_neg).sum(-1))
            loss = loss + self.sp_weight * pairwise_bce(positive.float(), negative.float())
        return loss / b

    def attribute_losses(self, ids: Tensor, states: Tensor, chosen: Tensor) -> Tensor:
        """``w_AAP Σ ℓ_AAP + w_MAP Σ ℓ_MAP`` from the (B, L, D) states of the MIP-masked sequences, the (B, L) masked
        positions ``chosen`` and the original ids (not yet divided by B)."""
        attributes = self.attribute_embedding.weight  # (A, D)
        truth = self.item_attributes[ids].float()  # (B, L, A)
        unmasked = (ids != 0) & ~chosen
        total = ids.new_zeros((), dtype=torch.float32)
        for weight, head, where in ((self.aap_weight, self.aap_head, unmasked), (self.map_weight, self.map_head,
                                                                                  chosen)):
            if weight > 0:
                logits = head(states[where]) @ attributes.T  # (M, A)
                total = total + weight * F.binary_cross_entropy_with_logits(logits.float(), truth[where],
                                                                            reduction="sum")
        return total

    def describe(self) -> str:
        attributes = (f", AAP × {self.aap_weight}, MAP × {self.map_weight} over {self.num_attributes - 1} attributes"
                      if self.num_attributes else ", no attributes")
        return (f"S3-Rec pre-training (MIP ρ={self.mask_ratio} × {self.mip_weight}, SP × {self.sp_weight}"
                f"{attributes})")


def read_item_attributes(path: str, num_attributes: int, item_tokens, item_ids: str | None = None) -> Tensor:
    """(N + 1, A) bool attributes of items 1..N from an ``{item id: [attribute ids]}`` JSON file keyed by the
    dataset's source ids, or by other ids that the ``item_ids`` TSV maps them to; an item absent from the file has
    none. Errors name the file, and the line of the TSV."""
    import json
    from pathlib import Path

    source = Path(path)
    if not source.is_file():
        raise UsageError(f"S3RecPretraining.attributes: {source} not found")
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UsageError(f"{source}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: expected an object mapping item ids to lists of attribute ids")
    mapping = None
    if item_ids is not None:
        mapping = {}
        lines = Path(item_ids).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[1:], start=2):  # a header line first
            parts = line.split("\t")
            if len(parts) != 2:
                raise UsageError(f"{item_ids}:{number}: expected two tab-separated ids, got {line!r}")
            mapping[parts[0]] = parts[1]
    table = torch.zeros(len(item_tokens), num_attributes, dtype=torch.bool)
    for item, token in enumerate(item_tokens):
        if token is None:
            continue
        key = mapping.get(str(token)) if mapping is not None else str(token)
        for attribute in raw.get(key, []) if key is not None else []:
            if not isinstance(attribute, int) or not 1 <= attribute < num_attributes:
                raise UsageError(f"{source}: item {key} has attribute {attribute!r}, outside 1..{num_attributes - 1}"
                                 ": raise S3RecPretraining.num_attributes")
            table[item, attribute] = True
    return table
