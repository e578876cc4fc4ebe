"""Run the semantic stage for one dataset: summaries → text embeddings → item and user neighbour pools.

    sracl-semantic --config configs/semantic/default.yaml        # embedded synthetic dataset, offline
    sracl-semantic --config configs/semantic/beauty.yaml         # Beauty from ../shared/data
    sracl-semantic --config configs/semantic/beauty.yaml --index hnsw --profile minilm_hnsw
    sracl-semantic --config configs/semantic/deepseek.yaml       # the paper's LLM (needs its API key)

(``python data/semantic.py ...`` in a checkout.) A ``--config`` that is not a file names a shipped config, so the
lines above work from any directory after an install. Everything is cached under
``<data_root>/<name>/semantic/<profile>/``; a rerun reuses what is up to date and rebuilds only what a changed input
or setting affects. ``--help`` lists every option.
"""

from __future__ import annotations

import json
import sys

from jsonargparse import ActionConfigFile, ArgumentParser

from sracl_lightning.resources import with_packaged_configs
from sracl_lightning.semantic.stage import SemanticStage


def build_stage(argv: list[str] | None = None, prog: str | None = None) -> SemanticStage:
    """Parse the command line (``sys.argv[1:]`` by default, and ``--config`` files) into a :class:`SemanticStage`."""
    parser = ArgumentParser(description=__doc__, prog=prog)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    parser.add_class_arguments(SemanticStage, fail_untyped=True)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    init = instantiate(parser.parse_args(with_packaged_configs(sys.argv[1:] if argv is None else argv)))
    init.pop("config", None)
    return SemanticStage(**init)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the stage and print its report as JSON; the exit code."""
    report = build_stage(argv, prog=prog).run()
    print(json.dumps(report, indent=2))
    return 0


def cli() -> None:
    """The ``sracl-semantic`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
