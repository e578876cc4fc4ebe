"""sracl-lightning: SRA-CL (Semantic Retrieval Augmented Contrastive Learning) for sequential recommendation.

Layout (lowest layer first; ``tests/test_layering.py`` checks it from the import statements):

* :mod:`.datasets` — sources, 5-core conversion, leave-one-out samples, the :class:`SeqBatch` (plain PyTorch);
* :mod:`.semantic` — the semantic stage: LLM summaries, text embeddings, neighbour pools, the frozen tables;
* :mod:`.models` — sequence encoders (:class:`SASRec`, :class:`GRU4Rec`), scoring, ranking metrics;
* :mod:`.methods` — the training method: :class:`SRACLModule` and the objectives it is composed of;
* :mod:`.training` — the Lightning edge: DataModule, CLI, callbacks, ``train`` and ``evaluate``;
* :mod:`.experiments` — tables over datasets, rows and seeds, figures; :mod:`.serving` — trained models in use.

The names below are the public API, imported on first use (so that importing a core module loads no Lightning);
configs name them by these short paths (``class_path: sracl_lightning.UserContrast``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: Public name -> the module that defines it.
_PUBLIC = {
    # data
    "SeqBatch": "sracl_lightning.datasets.batch",
    "SequenceSamples": "sracl_lightning.datasets.samples",
    # models
    "SequenceEncoder": "sracl_lightning.models.encoder",
    "SASRec": "sracl_lightning.models.sasrec",
    "GRU4Rec": "sracl_lightning.models.gru4rec",
    "BERT4Rec": "sracl_lightning.models.bert4rec",
    "LLMESR": "sracl_lightning.models.llmesr",
    "RankingMetrics": "sracl_lightning.models.metrics",
    # the method and its parts (the class_path strings of configs/)
    "SRACLModule": "sracl_lightning.methods.module",
    "MethodDims": "sracl_lightning.methods.parts",
    "TrainingContext": "sracl_lightning.methods.parts",
    "Objective": "sracl_lightning.methods.parts",
    "Part": "sracl_lightning.methods.parts",
    "RecLoss": "sracl_lightning.methods.rec_losses",
    "FullSoftmaxCrossEntropy": "sracl_lightning.methods.rec_losses",
    "BinaryCrossEntropy": "sracl_lightning.methods.rec_losses",
    "GeneralisedBinaryCrossEntropy": "sracl_lightning.methods.rec_losses",
    "SampledSoftmaxCrossEntropy": "sracl_lightning.methods.rec_losses",
    "InfoNCE": "sracl_lightning.methods.losses",
    "SampleSynthesizer": "sracl_lightning.methods.synthesizer",
    "UserContrast": "sracl_lightning.methods.user_contrast",
    "NeighbourSource": "sracl_lightning.methods.user_contrast",
    "EncodedNeighbours": "sracl_lightning.methods.user_contrast",
    "MemoryBank": "sracl_lightning.methods.user_contrast",
    "PositiveSource": "sracl_lightning.methods.user_contrast",
    "SynthesizedPositive": "sracl_lightning.methods.user_contrast",
    "RandomNeighbourPositive": "sracl_lightning.methods.user_contrast",
    "ViewContrast": "sracl_lightning.methods.views",
    "ViewGenerator": "sracl_lightning.methods.views",
    "IdViews": "sracl_lightning.methods.views",
    "SemanticSubstitution": "sracl_lightning.methods.views",
    "LearnableSubstitution": "sracl_lightning.methods.views",
    "DuoRecContrast": "sracl_lightning.methods.duorec",
    "SameTargetInfoNCE": "sracl_lightning.methods.duorec",
    "MaskedItemPrediction": "sracl_lightning.methods.bert4rec",
    "CoSeRecContrast": "sracl_lightning.methods.coserec",
    "CoSeRecAugmentations": "sracl_lightning.methods.coserec",
    "IntentContrast": "sracl_lightning.methods.iclrec",
    "Intents": "sracl_lightning.methods.iclrec",
    "CrossSubsequenceContrast": "sracl_lightning.methods.icsrec",
    "MetaContrast": "sracl_lightning.methods.mclrec",
    "MetaOptimisedModule": "sracl_lightning.methods.mclrec_module",
    "RetrievalDistillation": "sracl_lightning.methods.llmesr",
    "S3RecPretraining": "sracl_lightning.methods.s3rec",
    "S3RecModule": "sracl_lightning.methods.s3rec_module",
    # training and serving
    "SeqRecDataModule": "sracl_lightning.training.datamodule",
    "load_trained": "sracl_lightning.training.trained",
    "load_run": "sracl_lightning.training.trained",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sracl_lightning' has no attribute {name!r}")


#: Modules of the flat layout (before the sub-packages) -> where they live now. The ``class_path`` strings of older
#: checkpoints, configs and run records name them, so they still import (as aliases of the new modules).
MOVED_MODULES = {
    "catalog": "datasets.catalog", "interaction_logs": "datasets.interaction_logs",
    "sequence_files": "datasets.sequence_files", "sequences": "datasets.sequences", "processed": "datasets.processed",
    "samples": "datasets.samples", "batch": "datasets.batch", "manifest": "datasets.manifest",
    "item_text": "datasets.item_text",
    "semantic": "semantic.stage", "semantic_cli": "training.semantic_cli", "semantic_tables": "semantic.tables",
    "llm": "semantic.llm", "prompts": "semantic.prompts", "text_embeddings": "semantic.text_embeddings",
    "neighbours": "semantic.neighbours", "cooccurrence": "semantic.cooccurrence",
    "encoder": "models.encoder", "sasrec": "models.sasrec", "gru4rec": "models.gru4rec", "scoring": "models.scoring",
    "metrics": "models.metrics",
    "losses": "methods.losses", "synthesizer": "methods.synthesizer", "substitution": "methods.substitution",
    "module": "methods.legacy", "duorec": "methods.legacy", "memory_bank": "methods.legacy",
    "ablations": "methods.legacy", "learnable_substitution": "methods.legacy",
    "datamodule": "training.datamodule", "callbacks": "training.callbacks", "cli": "training.cli",
    "cli_errors": "training.cli_errors", "results": "training.results", "train": "training.train",
    "evaluate": "training.evaluate",
    "figures": "experiments.figures", "recommend": "serving.recommend", "trained": "training.trained",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``sracl_lightning.<old>`` as the module it moved to (the same module object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package != __name__ or old not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module) -> None:
        pass  # the target module is already executed


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
