"""Convert datasets into the processed layout and print their statistics.

    python data/prepare.py                         # every catalog dataset found under the source root
    python data/prepare.py beauty office           # some of them
    python data/prepare.py path/to/file.inter      # any file (format inferred, or --format)
    python data/prepare.py data/raw/synthetic/reviews_Synthetic_5.json.gz

A dataset already converted from the same source content is reused; ``--force`` converts again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sracl_lightning import processed
from sracl_lightning.catalog import CATALOG, READERS, resolve
from sracl_lightning.sequences import DataFormatError, format_stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help=f"catalog names ({', '.join(CATALOG)}) or file paths")
    parser.add_argument("--source_root", default="../shared/data")
    parser.add_argument("--data_root", default="data/processed")
    parser.add_argument("--format", choices=sorted(READERS), default=None, help="format of files given by path")
    parser.add_argument("--force", action="store_true", help="convert even when an up-to-date copy exists")
    args = parser.parse_args(argv)

    names = args.datasets or [n for n, spec in CATALOG.items() if (Path(args.source_root) / spec.path).is_file()]
    if not names:
        parser.error(f"no dataset given and none of the catalog files exists under {args.source_root}")
    for dataset in names:
        try:
            name, source, fmt = resolve(dataset, args.source_root, args.format)
            directory, stats, converted = processed.prepare(name, source, fmt, Path(args.data_root), force=args.force)
        except (DataFormatError, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        note = CATALOG[name].note if name in CATALOG else ""
        print(f"{'converted' if converted else 'up to date'}: {directory}" + (f"  ({note})" if note else ""))
        print(f"  {format_stats(name, stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
