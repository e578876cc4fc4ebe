"""A cheaper cost mode of SRA-CL: the neighbours' representations come from a no-grad memory bank.

The released code encodes the K retrieved prefixes of every anchor with gradient at every step, about 14 encoder
passes per sample (docs/method.md#cost-modes). Here every training prefix has a row in a bank of representations
that carries no gradient: it is rebuilt by one no-grad pass over all prefixes at the start of each epoch, and the
rows of each batch's anchors are overwritten with their fresh representations as training goes. L_CS then reads the K
neighbours' rows instead of encoding them, so a step costs the anchor passes only.

What changes: the synthesized positive h⁺_u still depends on the learnable synthesizer (W, a), but gradient no
longer flows into the encoder through the neighbours, only through the anchor. NOTE: a deviation from the
paper/code for cost; bench/sracl.py measures its speed and the metrics against the faithful mode.

Under DDP each process rebuilds the whole bank (the same weights give the same rows), and every step's anchor rows
are gathered from all ranks (B·D floats per rank and step) so that every rank writes the rows of the global batch:
the banks stay identical across ranks and equal to the single-process bank on the same global batches. Dimension
letters: P training prefixes, B batch, G global batch (B summed over ranks), K neighbours, D hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sracl_lightning.batch import SeqBatch
from sracl_lightning.distributed import all_gather_rows
from sracl_lightning.module import SRACLModule


class MemoryBankSRACL(SRACLModule):
    """:class:`SRACLModule` whose L_CS reads neighbour representations from a no-grad memory bank.

    Args:
        bank_batch_size: Prefixes per forward pass when the bank is rebuilt at the start of an epoch.
        **kwargs: Everything :class:`SRACLModule` takes.
    """

    def __init__(self, *args, bank_batch_size: int = 4096, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bank_batch_size = bank_batch_size
        # (P, D) representations of every training prefix; rebuilt each epoch, so never checkpointed.
        self.register_buffer("bank", torch.empty(0, self.encoder.hidden_size), persistent=False)

    @torch.no_grad()
    def rebuild_bank(self) -> None:
        """One no-grad pass over every training prefix, in eval mode (no dropout)."""
        samples = self.trainer.datamodule.datasets["train"]
        was_training = self.training
        self.eval()
        rows = []
        for start in range(0, len(samples), self.bank_batch_size):
            index = torch.arange(start, min(start + self.bank_batch_size, len(samples)))
            rows.append(self(samples.input_windows(index).to(self.device)).float())  # (b, D)
        self.bank = torch.cat(rows)  # (P, D)
        self.train(was_training)

    def on_train_epoch_start(self) -> None:
        if self.user_cl_weight > 0:
            self.rebuild_bank()

    def neighbour_hidden(self, batch: SeqBatch) -> Tensor:
        """``h_u'`` (B, K, D) read from the bank: no encoder pass, no gradient."""
        return self.bank[batch.neighbour_rows]

    def anchor_hidden(self, batch: SeqBatch, h: Tensor) -> Tensor:
        """The rec pass's ``h_u``; its detached value refreshes the anchors' bank rows.

        NOTE: the released code encodes the anchor a second time for L_CS (another dropout mask); this mode reuses
        the rec pass, one encoder pass fewer per sample (docs/method.md#deviations, D25).
        """
        self.refresh_bank(batch.prefix_row, h.detach().float())
        return h

    def refresh_bank(self, rows: Tensor, hidden: Tensor) -> None:
        """Overwrite the (B,) bank ``rows`` with (B, D) ``hidden``, for the anchors of every DDP rank."""
        rows, _ = all_gather_rows(rows)  # (G,)
        hidden, _ = all_gather_rows(hidden)  # (G, D)
        self.bank[rows] = hidden
