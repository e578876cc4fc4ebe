"""End to end on the synthetic dataset: the pipeline learns the planted sequential structure.

A small SASRec trained for a few epochs must clearly beat the most-popular-items baseline on the test split.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from sracl_lightning.methods.module import SRACLModule
from sracl_lightning.methods.user_contrast import UserContrast
from sracl_lightning.methods.views import ViewContrast
from sracl_lightning.models.metrics import RankingMetrics
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.training.datamodule import SeqRecDataModule

pytestmark = pytest.mark.integration


def popularity_hr10(data: SeqRecDataModule) -> float:
    """HR@10 on the test split when every user gets the items most frequent in the training parts."""
    sequences = data.sequences
    counts = np.zeros(data.num_items, dtype=np.float64)
    for user in range(sequences.num_users):
        np.add.at(counts, sequences.sequence(user)[:-2] - 1, 1.0)
    test = data.datasets["test"]
    targets = test.items[test.positions] - 1
    metric = RankingMetrics(ks=(10,))
    # Break popularity ties by a fixed tiny jitter so that the pessimistic tie rule does not punish the baseline.
    scores = torch.from_numpy(counts + np.linspace(0, 1e-3, data.num_items)).float()
    metric.update(scores.expand(len(targets), -1), targets)
    return float(metric.compute()["hr@10"])


def test_sasrec_beats_popularity_on_synthetic(tmp_path, synthetic_reviews) -> None:
    L.seed_everything(0)
    data = SeqRecDataModule(dataset=str(synthetic_reviews), source_format="amazon", data_root=str(tmp_path),
                            batch_size=64, eval_batch_size=512)
    model = SRACLModule(data.num_items, data.max_len,
                        encoder=lambda n, length: SASRec(n, length, hidden_size=32, hidden_dropout=0.2,
                                                         attn_dropout=0.2),
                        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))  # the backbone alone
    trainer = L.Trainer(accelerator="cpu", max_epochs=12, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    learned = trainer.test(model, datamodule=data, verbose=False)[0]["test/hr@10"]
    baseline = popularity_hr10(data)
    print(f"synthetic test HR@10: SASRec {learned:.4f}, popularity {baseline:.4f}")
    assert learned > 1.5 * baseline


def train_to_early_stop(model: SRACLModule, data: SeqRecDataModule, tmp_path, name: str) -> dict[str, float]:
    """Fit with early stopping on val MRR@10 (patience 20), then test the best checkpoint."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    best = ModelCheckpoint(dirpath=tmp_path / name, monitor="val/mrr@10", mode="max")
    trainer = L.Trainer(accelerator="cpu", max_epochs=200, logger=False, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=[best, EarlyStopping("val/mrr@10", mode="max", patience=20)])
    trainer.fit(model, datamodule=data)
    state = torch.load(best.best_model_path, weights_only=False)["state_dict"]
    model.load_state_dict(state, strict=False)  # strict=False: the memory bank is not checkpointed
    return trainer.test(model, datamodule=data, verbose=False)[0]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "Known gap (docs/results.md, 'SRA-CL on the synthetic data'): SRA-CL ties or beats w/o CL on HR but loses on "
    "NDCG on the synthetic generator, also on a variant whose text neighbours are substitutes. strict: an XPASS "
    "fails, so the marker must go when the generator or the method changes this."))
def test_sracl_beats_backbone_alone_on_synthetic(tmp_path, synthetic_reviews) -> None:
    from functools import partial

    from sracl_lightning.semantic.stage import SemanticStage

    data_root = str(tmp_path / "processed")
    SemanticStage(dataset=str(synthetic_reviews), source_format="amazon", data_root=data_root, profile="check",
                  user_source="item_mean", pool_size=20, progress=False).run()
    results = {}
    for name, weight in (("w/o CL", 0.0), ("SRA-CL", 0.1)):
        L.seed_everything(0)
        data = SeqRecDataModule(dataset=str(synthetic_reviews), source_format="amazon", data_root=data_root,
                                batch_size=64, eval_batch_size=512, semantic_profile="check" if weight else None,
                                num_neighbours=10 if weight else None)
        objectives = {"user_contrast": partial(UserContrast, weight=weight),  # memory bank, as configs/sracl/
                      "item_contrast": partial(ViewContrast, weight=weight)} if weight else {}
        model = SRACLModule(data.num_items, data.max_len, encoder=partial(SASRec, hidden_size=32),
                            semantic_dim=data.semantic_dim if weight else None, **objectives)
        results[name] = train_to_early_stop(model, data, tmp_path, name.replace("/", ""))
    print({name: {k: round(v, 4) for k, v in r.items() if "@10" in k or "@20" in k} for name, r in results.items()})
    for metric in ("test/hr@20", "test/ndcg@20"):
        assert results["SRA-CL"][metric] > results["w/o CL"][metric], metric
