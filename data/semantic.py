"""Run the semantic stage for one dataset: summaries → text embeddings → item and user neighbour pools.

    python data/semantic.py --config configs/semantic/default.yaml        # embedded synthetic dataset, offline
    python data/semantic.py --config configs/semantic/beauty.yaml         # Beauty from ../shared/data
    python data/semantic.py --config configs/semantic/beauty.yaml --index hnsw --profile minilm_hnsw
    python data/semantic.py --config configs/semantic/deepseek.yaml       # the paper's LLM (needs its API key)

Everything is cached under ``<data_root>/<name>/semantic/<profile>/``; a rerun reuses what is up to date and
rebuilds only what a changed input or setting affects. ``--help`` lists every option. Installed: ``sracl-semantic``;
the code is :mod:`sracl_lightning.training.semantic_cli`, this file only runs it.
"""

from __future__ import annotations

import sys

from sracl_lightning.semantic.stage import SemanticStage
from sracl_lightning.training import semantic_cli


def build_stage(argv: list[str] | None = None) -> SemanticStage:
    """Parse the command line (and ``--config`` files) into a :class:`SemanticStage`."""
    return semantic_cli.build_stage(argv, prog="data/semantic.py")


def main(argv: list[str] | None = None) -> int:
    return semantic_cli.main(argv, prog="data/semantic.py")


if __name__ == "__main__":
    sys.exit(main())
