"""``SeqRecDataModule``: converts a dataset once, then serves leave-one-out samples as :class:`SeqBatch`.

Evaluation under DDP uses a sampler that does not pad: Lightning's default ``DistributedSampler`` repeats users
to even out the ranks, which would count them twice in the metrics.

Every checkpoint records the data's identity (:func:`sracl_lightning.datasets.processed.data_identity`: the source's
content hash, the statistics and the converted files' hashes) through :meth:`SeqRecDataModule.state_dict`. A
DataModule restored from a checkpoint (resume, ``evaluate.py``, the recommender, the figures) refuses data whose
identity differs, before it converts anything, so another run's conversion is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from sracl_lightning.datasets import processed
from sracl_lightning.datasets.catalog import SourceFormat, resolve_source
from sracl_lightning.datasets.manifest import read_manifest
from sracl_lightning.datasets.samples import SequenceSamples, Split, collate_batch
from sracl_lightning.datasets.sequences import Sequences, format_stats
from sracl_lightning.errors import DataMismatchError, UsageError, check_at_least
from sracl_lightning.methods.parts import TrainingContext
from sracl_lightning.semantic.tables import SemanticSamples, SemanticTables, load_semantic_tables, semantic_dir


class SeqRecDataModule(L.LightningDataModule):
    """Leave-one-out sequential-recommendation data.

    Args:
        dataset: A catalog name (``beauty``, ``sports``, ``office``, ``yelp``, ``toys``, ...) or a path to a file.
        source_root: Where catalog files live (the shared data folder).
        source_format: Format of a file given by path (``s3rec``, ``sracl``, ``recbole``, ``amazon``); inferred
            for ``.inter`` and ``.json[.gz]`` files.
        data_root: Where converted datasets are kept (``<data_root>/<name>/``).
        max_len: Window length ``L``: the last ``max_len`` items, left-padded with 0 (20 in the paper).
        batch_size: *Global* training batch size; divided by the number of processes under DDP.
        eval_batch_size: Evaluation batch size per process.
        num_workers: DataLoader workers. Batches are built by tensor indexing, so 0 is usually fastest.
        semantic_profile: Load the semantic stage's artefacts of this profile (``data/semantic.py --profile``):
            frozen embeddings and neighbour pools, as :attr:`semantic`. ``None`` for the backbone alone.
        num_neighbours: Keep the first ``k`` neighbours of each pool (``None``: all that were built; at most the
            pool size).
    """

    def __init__(
        self,
        dataset: str = "data/raw/synthetic/reviews_Synthetic_5.json.gz",
        source_root: str = "../shared/data",
        source_format: SourceFormat | None = None,
        data_root: str = "data/processed",
        max_len: int = 20,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        semantic_profile: str | None = None,
        num_neighbours: int | None = None,
    ) -> None:
        super().__init__()
        check_at_least("data.max_len", max_len, 1)
        check_at_least("data.batch_size", batch_size, 1)
        check_at_least("data.eval_batch_size", eval_batch_size, 1)
        check_at_least("data.num_workers", num_workers, 0)
        check_at_least("data.num_neighbours", num_neighbours, 1, optional=True)
        self.save_hyperparameters()
        resolved = resolve_source(dataset, source_root, source_format)
        self.name, self.source, self.source_format = resolved.name, resolved.path, resolved.format
        # Item text is optional for training (it gives titles to recommendations); converted when the source has it.
        text = resolved.item_text
        self.item_text = text if text is not None and text.path.is_file() else None
        self.data_root = Path(data_root)
        self.max_len = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.semantic_profile = semantic_profile
        self.num_neighbours = num_neighbours
        self._semantic: SemanticTables | None = None
        self._sequences: Sequences | None = None
        self._stats: dict | None = None
        # The identity of the data a checkpoint was trained on (set by load_state_dict); None for a new run.
        self.expected_identity: dict | None = None
        self.per_device_batch_size = batch_size
        self.datasets: dict[Split, SequenceSamples] = {}

    # ------------------------------------------------------------------------------------------ dataset facts
    @property
    def directory(self) -> Path:
        """The processed folder of this source (:func:`sracl_lightning.datasets.processed.dataset_directory`)."""
        return processed.dataset_directory(self.data_root, self.name, self.source, self.source_format)

    @property
    def stats(self) -> dict:
        """Statistics of the converted dataset (converts it on first access)."""
        if self._stats is None:
            self.prepare_data()
        return self._stats

    @property
    def num_items(self) -> int:
        return int(self.stats["num_items"])

    @property
    def num_users(self) -> int:
        return int(self.stats["num_users"])

    @property
    def sequences(self) -> Sequences:
        if self._sequences is None:
            self._sequences = processed.load(self.directory)
        return self._sequences

    @property
    def semantic_dim(self) -> int | None:
        """Width E of the semantic profile's vectors (read from its manifest), ``None`` without a profile."""
        if self.semantic_profile is None:
            return None
        path = semantic_dir(self.directory, self.semantic_profile) / "item_embeddings.npy"
        manifest = read_manifest(path)
        if manifest is None:
            raise FileNotFoundError(f"{path} is missing or incomplete; build the profile with: python "
                                    f"data/semantic.py --dataset {self.name} --profile {self.semantic_profile} [...]")
        return int(manifest["shape"][1])

    @property
    def semantic(self) -> SemanticTables:
        """The frozen semantic tables of ``semantic_profile`` (loaded and checked on first access)."""
        if self.semantic_profile is None:
            raise UsageError("this DataModule has no semantic_profile; build one with data/semantic.py and pass "
                             "--data.semantic_profile NAME")
        if self._semantic is None:
            self._semantic = load_semantic_tables(self.directory, self.name, self.semantic_profile, self.sequences,
                                                  k=self.num_neighbours)
            rank_zero_info(f"[data] semantic profile {self.semantic_profile!r}: width {self._semantic.dim}, "
                           f"{self._semantic.pool_size} neighbours per item and per prefix")
        return self._semantic

    # ------------------------------------------------------------------------------------------------ identity
    @property
    def identity(self) -> dict:
        """The identity of the converted data (:func:`sracl_lightning.datasets.processed.data_identity`)."""
        return processed.data_identity(self.stats)

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the identity of the data the model is trained on."""
        return {"data_identity": self.identity} if self._stats is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Remember the checkpoint's data identity; data that differs is refused (now, if already prepared)."""
        self.expected_identity = state_dict.get("data_identity")
        if self._stats is not None:
            self.check_identity()

    def check_identity(self) -> None:
        """Raise :class:`DataMismatchError` unless the converted data is the checkpoint's (if one was restored).

        A checkpoint written before identities were recorded cannot be checked; that is said once, not refused.
        """
        if self.expected_identity is None:
            return
        current = self.identity
        if current != self.expected_identity:
            differ = sorted(k for k in current if current.get(k) != self.expected_identity.get(k))
            raise DataMismatchError(
                f"the checkpoint was trained on {processed.describe_identity(self.expected_identity)}, but "
                f"{self.source} now gives {processed.describe_identity(current)} (differs in {', '.join(differ)}); "
                "refusing to use a model on other data")

    def _check_source_before_converting(self) -> None:
        """With a checkpoint's identity: refuse a changed source before anything is converted over its data."""
        expected = self.expected_identity
        if expected is None or not self.source.is_file():
            return
        try:
            stats = processed.read_stats(self.directory)
        except processed.DamagedConversionError:
            stats = None
        if expected.get("source_format") != self.source_format or not processed.source_matches(
                self.source, expected["source_sha256"], stats):
            raise DataMismatchError(
                f"the checkpoint was trained on {processed.describe_identity(expected)} read as "
                f"{expected.get('source_format')}, but {self.source} (read as {self.source_format}) now holds "
                f"sha256 {processed.file_sha256(self.source)[:12]}; refusing to use a model on other data")

    # ------------------------------------------------------------------------------------------------ hooks
    def prepare_data(self) -> None:
        """Convert the source into the processed layout unless an up-to-date conversion exists."""
        self._check_source_before_converting()
        _, self._stats, converted = processed.prepare(self.name, self.source, self.source_format, self.data_root,
                                                      item_text=self.item_text)
        verb = "converted" if converted else "reusing"
        rank_zero_info(f"[data] {verb} {self.source} -> {self.directory}")
        rank_zero_info(f"[data] {format_stats(self.name, self._stats)}")
        self.check_identity()

    def setup(self, stage: str | None = None) -> None:
        if self._stats is None:
            self._stats = processed.read_stats(self.directory)
            if self._stats is None:
                self.prepare_data()
        self.check_identity()
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise UsageError(f"data.batch_size {self.batch_size} is not divisible by the {world} processes")
        self.per_device_batch_size = self.batch_size // world
        splits: list[Split] = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(
            stage, ["train", "val", "test"])
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.build_samples(split)

    def training_context(self, device: torch.device | str = "cpu") -> TrainingContext:
        """What a method's objectives may read before training (:class:`TrainingContext`): the training samples
        and, with a semantic profile, its frozen tables. Needs :meth:`setup` for ``"fit"`` first."""
        if "train" not in self.datasets:
            raise RuntimeError("training_context() needs the training samples: call setup('fit') first")
        return TrainingContext(num_items=self.num_items, max_len=self.max_len, train_samples=self.datasets["train"],
                               semantic=self.semantic if self.semantic_profile is not None else None,
                               device=torch.device(device), item_tokens=self.sequences.item_tokens)

    def build_samples(self, split: Split) -> SequenceSamples:
        """The dataset of one split; training samples carry their neighbours when a semantic profile is set."""
        if split == "train" and self.semantic_profile is not None:
            return SemanticSamples(self.sequences, self.semantic, self.max_len)
        # Evaluation batches carry the whole history, so that already-seen items can be masked.
        return SequenceSamples(self.sequences, split, self.max_len, with_history=split != "train")

    # ----------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        # The shuffle draws from torch's global generator, which callbacks.RandomState checkpoints. The iterator's
        # own draw (the workers' base seed) comes from a private generator: a resumed run creates a fresh iterator
        # where the uninterrupted one reuses its persistent workers, and must not shift the global stream by it.
        dataset = self.datasets["train"]
        return DataLoader(dataset, batch_size=self.per_device_batch_size,
                          sampler=torch.utils.data.RandomSampler(dataset),
                          generator=torch.Generator().manual_seed(torch.initial_seed()),
                          collate_fn=collate_batch, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def _eval_dataloader(self, split: Split) -> DataLoader:
        dataset = self.datasets[split]
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Ranks get ceil/floor shares and no user twice; the metrics are summed across ranks.
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler, shuffle=False,
                          collate_fn=collate_batch, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_dataloader("test")
