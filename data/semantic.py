"""Run the semantic stage for one dataset: summaries → text embeddings → item and user neighbour pools.

    python data/semantic.py --config configs/semantic/default.yaml        # embedded synthetic dataset, offline
    python data/semantic.py --config configs/semantic/beauty.yaml         # Beauty from ../shared/data
    python data/semantic.py --config configs/semantic/beauty.yaml --index hnsw --profile minilm_hnsw
    python data/semantic.py --config configs/semantic/deepseek.yaml       # the paper's LLM (needs its API key)

Everything is cached under ``<data_root>/<name>/semantic/<profile>/``; a rerun reuses what is up to date and
rebuilds only what a changed input or setting affects. ``--help`` lists every option.
"""

from __future__ import annotations

import json
import sys

from jsonargparse import ActionConfigFile, ArgumentParser

from sracl_lightning.semantic import SemanticStage


def build_stage(argv: list[str] | None = None) -> SemanticStage:
    """Parse the command line (and ``--config`` files) into a :class:`SemanticStage`."""
    parser = ArgumentParser(description=__doc__, prog="data/semantic.py")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    parser.add_class_arguments(SemanticStage, fail_untyped=True)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    init = instantiate(parser.parse_args(argv))
    init.pop("config", None)
    return SemanticStage(**init)


def main(argv: list[str] | None = None) -> int:
    report = build_stage(argv).run()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
