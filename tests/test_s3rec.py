"""S3-Rec: bidirectional pre-training states, the MIP and SP inputs, both losses against hand-composed values, the
fine-tuning optimizer without the pre-training heads, configs/s3rec.yaml (pre-training, then fine-tuning)
through the CLI, and a run stopped during pre-training resuming into the uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from sracl_lightning.errors import InvalidArgumentError, UsageError
from sracl_lightning.methods import s3rec
from sracl_lightning.methods.parts import MethodDims, TrainingContext
from sracl_lightning.methods.s3rec import S3RecPretraining, bidirectional_states, segment_masks
from sracl_lightning.methods.s3rec_module import S3RecModule
from sracl_lightning.models.sasrec import SASRec
from sracl_lightning.training.callbacks import EpochTimer
from sracl_lightning.training.cli import SRACLCLI
from tests.conftest import REPO_ROOT, run_train, tiny_args, toy_samples

N, L, D = 9, 5, 8


def encoder() -> SASRec:
    torch.manual_seed(0)
    return SASRec(N, max_len=L, hidden_size=D, num_heads=2, inner_size=16, hidden_dropout=0.0, attn_dropout=0.0,
                  extra_tokens=("mask",)).eval()


@pytest.mark.unit
def test_pretraining_attends_both_ways_and_sequences_hold_their_target():
    enc = encoder()
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    later = torch.tensor([[0, 1, 2, 3, 7]])
    assert not torch.allclose(bidirectional_states(enc, ids)[0, 1], bidirectional_states(enc, later)[0, 1])
    samples = toy_samples({"a": [1, 2, 3, 4, 5, 6]}, num_items=N, max_len=L)  # trains on 1 2 3 4: targets 2 3 4
    assert S3RecPretraining.sequences(samples, torch.arange(3)).tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3],
                                                                             [0, 1, 2, 3, 4]]


@pytest.mark.unit
def test_mip_masks_the_last_item_always_padding_never_and_the_rest_at_the_ratio():
    torch.manual_seed(0)
    part = S3RecPretraining(MethodDims(N, L, D), mask_ratio=0.3)
    ids = torch.tensor([[0, 1, 2, 3, 4]] * 4000)
    masked, chosen = part.mip_inputs(ids, mask_id=10)
    assert chosen[:, -1].all() and not chosen[:, 0].any()
    assert torch.equal(masked[chosen], torch.full((int(chosen.sum()),), 10))
    assert chosen[:, 1:4].float().mean().item() == pytest.approx(0.3, abs=0.02)


@pytest.mark.unit
def test_segments_are_contiguous_real_and_at_most_half_the_items():
    torch.manual_seed(0)
    ids = torch.tensor([[0, 0, 0, 0, 5], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]] * 300)
    masks = segment_masks(ids)
    assert not masks[0::3].any()  # one item: no segment
    for row, n in ((1, 4), (2, 5)):
        lengths = masks[row::3].sum(1)
        assert lengths.min() == 1 and lengths.max() == n // 2
        assert not (masks[row::3] & (ids[row::3] == 0)).any()
        starts = masks[row::3].float().argmax(1)
        j = torch.arange(L)[None, :]
        expected = (j >= starts[:, None]) & (j < (starts + lengths)[:, None])
        assert torch.equal(masks[row::3], expected)  # contiguous


def fitted(**kwargs) -> S3RecPretraining:
    part = S3RecPretraining(MethodDims(N, L, D), **kwargs)
    part.setup(TrainingContext(num_items=N, max_len=L, train_samples=toy_samples({"a": [1, 2, 3, 4, 5, 6]},
                                                                                   num_items=N, max_len=L)))
    return part


@pytest.mark.unit
def test_mip_loss_by_hand(monkeypatch):
    enc, part = encoder(), fitted(sp_weight=0.0)
    ids = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    chosen = torch.tensor([[False, False, True, False, True], [True, False, False, False, True]])
    monkeypatch.setattr(part, "mip_inputs", lambda ids, mask_id: (torch.where(chosen, mask_id, ids), chosen))
    monkeypatch.setattr(s3rec, "sample_negatives", lambda seen, n, k: torch.tensor([[6], [1]]))
    loss = part(ids, enc)
    states = part.mip_head(bidirectional_states(enc, torch.where(chosen, 10, ids)))  # (2, L, D)
    weight = enc.item_embedding.weight
    expected = 0.0
    for b, j, negative in ((0, 2, 6), (0, 4, 6), (1, 0, 1), (1, 4, 1)):
        p = torch.sigmoid(states[b, j] @ weight[ids[b, j]])
        n = torch.sigmoid(states[b, j] @ weight[negative])
        expected += F.softplus(-(p - n)).item()
    assert loss.item() == pytest.approx(expected / 2, rel=1e-5)


@pytest.mark.unit
def test_sp_loss_by_hand(monkeypatch):
    enc, part = encoder(), fitted(mip_weight=0.0)
    part.items = torch.full((20,), 7)  # every "elsewhere" segment item is 7, whatever the draw
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    segment = torch.tensor([[False, False, True, True, False]])
    monkeypatch.setattr(s3rec, "segment_masks", lambda ids: segment)
    loss = part(ids, enc)
    m = 10
    last = bidirectional_states(enc, torch.tensor([[0, 1, m, m, 4], [0, m, 2, 3, m], [0, m, 7, 7, m]]))[:, -1]
    c = part.sp_head(last[0])
    p, n = torch.sigmoid(c @ last[1]), torch.sigmoid(c @ last[2])
    assert loss.item() == pytest.approx(0.5 * F.softplus(-(p - n)).item(), rel=1e-5)


@pytest.mark.unit
def test_the_module_needs_a_mask_token_and_keeps_the_heads_out_of_fine_tuning():
    with pytest.raises(UsageError, match="extra_tokens"):
        S3RecModule(num_items=N, max_len=L)
    module = S3RecModule(num_items=N, max_len=L, encoder=lambda n, length: SASRec(n, length, extra_tokens=("mask",)))
    held = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    heads = {id(p) for p in module.pretraining.parameters()}
    assert heads and not held & heads and held | heads == {id(p) for p in module.parameters()}


@pytest.mark.integration
def test_s3rec_config_pretrains_then_fine_tunes_through_the_cli(tmp_path, synthetic_reviews, caplog):
    caplog.set_level("INFO")
    run_train(tiny_args(synthetic_reviews, tmp_path, "--config", str(REPO_ROOT / "configs" / "s3rec.yaml"),
                        "--model.init_args.pretrain_epochs", "2", "--trainer.max_epochs", "1"))
    results = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    assert results["protocol"]["pretraining"] == ("2 epochs of S3-Rec pre-training (MIP ρ=0.2 × 1.0, SP × 0.5, "
                                                  "no attributes)")
    assert "[s3rec] pre-trained 2 epochs" in caplog.text
    assert 0.0 <= results["metrics"]["hr@20"] <= 1.0 and results["metrics"]["users"] > 0


class Interrupted(Exception):
    """Stands for a process stopped between two pre-training epochs."""


@pytest.mark.integration
def test_a_run_stopped_during_pretraining_resumes_into_the_uninterrupted_run(tmp_path, synthetic_reviews,
                                                                             monkeypatch):
    def fitted(root: str, ckpt_path=None) -> tuple[dict[str, torch.Tensor], float]:
        config = str(REPO_ROOT / "configs" / "s3rec.yaml")
        cli = SRACLCLI(args=tiny_args(synthetic_reviews, tmp_path, "--config", config,
                                      "--model.init_args.pretrain_epochs", "3", "--trainer.max_epochs", "1",
                                      "--trainer.default_root_dir", str(tmp_path / root)))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer))
        return {k: v.detach().clone() for k, v in cli.model.state_dict().items()}, timer.seconds

    uninterrupted, _ = fitted("uninterrupted")
    # The pre-training checkpoints and the fine-tuning epoch share one last.ckpt: the last written is the epoch's.
    (last,) = (tmp_path / "uninterrupted").rglob("last*.ckpt")
    ended = torch.load(last, weights_only=True)
    assert last.name == "last.ckpt" and ended["global_step"] > 0 and ended["s3rec_pretraining"] == {"epochs": 3}
    save = S3RecModule.save_pretraining_checkpoint

    def save_then_stop_after_two(module: S3RecModule) -> None:
        save(module)
        if module.pretrained_epochs == 2:
            raise Interrupted

    monkeypatch.setattr(S3RecModule, "save_pretraining_checkpoint", save_then_stop_after_two)
    with pytest.raises(Interrupted):
        fitted("interrupted")
    monkeypatch.undo()
    (last,) = (tmp_path / "interrupted").rglob("last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["s3rec_pretraining"]["epochs"] == 2 and checkpoint["s3rec_pretraining"]["optimizer"]["state"]
    (timer,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EpochTimer")]
    assert timer["epochs"] == 0 and timer["seconds"] > 0, "two pre-training epochs' time is the run's time"

    resumed, seconds = fitted("resumed", last)
    differ = [k for k, v in uninterrupted.items() if not torch.equal(resumed[k], v)]
    assert not differ, f"the resumed run's weights differ from the uninterrupted run's: {differ}"
    assert seconds > timer["seconds"], "the resumed run counts the interrupted part's pre-training"


@pytest.mark.unit
def test_attributes_are_read_through_an_id_map_and_bad_files_are_named(tmp_path):
    from sracl_lightning.methods.s3rec import read_item_attributes

    (tmp_path / "attributes.json").write_text('{"10": [1, 2], "30": [3]}')
    (tmp_path / "ids.tsv").write_text("ours\ttheirs\na\t10\nb\t20\nc\t30\n")
    table = read_item_attributes(str(tmp_path / "attributes.json"), 4, [None, "a", "b", "c"],
                                 str(tmp_path / "ids.tsv"))
    assert table.tolist() == [[False] * 4, [False, True, True, False], [False] * 4, [False, False, False, True]]
    with pytest.raises(UsageError, match="attribute 3, outside 1..2"):
        read_item_attributes(str(tmp_path / "attributes.json"), 3, [None, "a", "b", "c"], str(tmp_path / "ids.tsv"))
    (tmp_path / "bad.tsv").write_text("ours\ttheirs\na 10\n")
    with pytest.raises(UsageError, match=r"bad.tsv:2: expected two tab-separated ids"):
        read_item_attributes(str(tmp_path / "attributes.json"), 4, [None, "a"], str(tmp_path / "bad.tsv"))
    with pytest.raises(InvalidArgumentError, match="num_attributes"):
        S3RecPretraining(MethodDims(N, L, D), attributes=str(tmp_path / "attributes.json"))


@pytest.mark.unit
def test_attribute_losses_by_hand(monkeypatch, tmp_path):
    (tmp_path / "attributes.json").write_text('{"1": [1], "2": [2, 3], "3": [3], "4": [1, 3]}')
    part = S3RecPretraining(MethodDims(N, L, D), mip_weight=0.0, sp_weight=0.0, attributes=str(
        tmp_path / "attributes.json"), num_attributes=4, aap_weight=0.2, map_weight=1.0)
    samples = toy_samples({"a": [1, 2, 3, 4, 5, 6]}, num_items=N, max_len=L)
    part.setup(TrainingContext(num_items=N, max_len=L, train_samples=samples,
                               item_tokens=[None, *map(str, range(1, N + 1))]))
    enc = encoder()
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    chosen = torch.tensor([[False, False, True, False, True]])
    monkeypatch.setattr(part, "mip_inputs", lambda ids, mask_id: (torch.where(chosen, mask_id, ids), chosen))
    loss = part(ids, enc)
    states = bidirectional_states(enc, torch.tensor([[0, 1, 10, 3, 10]]))[0]  # (L, D)
    attributes = part.attribute_embedding.weight  # (A, D)
    truth = {1: [0, 1, 0, 0], 2: [0, 0, 1, 1], 3: [0, 0, 0, 1], 4: [0, 1, 0, 1]}

    def bce(head, j, item):
        logits = head(states[j]) @ attributes.T
        return F.binary_cross_entropy_with_logits(logits, torch.tensor(truth[item], dtype=torch.float),
                                                  reduction="sum").item()

    aap = bce(part.aap_head, 1, 1) + bce(part.aap_head, 3, 3)  # unmasked items 1 and 3
    map_ = bce(part.map_head, 2, 2) + bce(part.map_head, 4, 4)  # masked items 2 and 4
    assert loss.item() == pytest.approx(0.2 * aap + 1.0 * map_, rel=1e-5)
    assert "AAP × 0.2, MAP × 1.0 over 3 attributes" in part.describe()
