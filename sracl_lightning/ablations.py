"""Table 2 ablation variants that are more than a loss weight set to 0.

* "w/o learnable": :class:`RandomNeighbourSRACL`, the learnable synthesizer replaced by one neighbour drawn
  uniformly from the K retrieved prefixes as the positive (paper §5.3, "random selection").

The other rows are configuration: w/o CL and w/o L_CS / L_IS set α or β to 0; w/o semantic trains on a profile
whose neighbours come from collaborative co-occurrence vectors; w/o LLM on a profile built without an LLM (see
``configs/ablations/``). Dimension letters: B batch, K neighbours, D hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sracl_lightning.batch import SeqBatch
from sracl_lightning.memory_bank import MemoryBankSRACL
from sracl_lightning.synthesizer import SampleSynthesizer


class RandomNeighbourSRACL(MemoryBankSRACL):
    """SRA-CL "w/o learnable": the positive of L_CS is one random retrieved neighbour, no synthesizer.

    Uses the memory-bank cost mode of the shipped SRA-CL configs, so it differs from them in the positive only.
    """

    def build_synthesizer(self, semantic_dim: int | None, dropout: float) -> SampleSynthesizer | None:
        return None  # nothing learnable in the positive

    def user_positive(self, batch: SeqBatch) -> Tensor:
        """``h_u'`` of one neighbour per anchor, drawn uniformly among the K (B, D)."""
        b, k = batch.neighbour_rows.shape
        pick = torch.randint(k, (b, 1), device=batch.neighbour_rows.device)  # (B, 1)
        rows = batch.neighbour_rows.gather(1, pick).squeeze(1)  # (B,)
        return self.bank[rows]
