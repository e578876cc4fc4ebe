"""Convert datasets into the processed layout and print their statistics.

    python data/prepare.py                         # every catalog dataset found under the source root
    python data/prepare.py beauty office           # some of them
    python data/prepare.py path/to/file.inter      # any file (format inferred, or --format)
    python data/prepare.py data/raw/synthetic/reviews_Synthetic_5.json.gz      # + meta_Synthetic.json.gz beside it
    python data/prepare.py yelp/review.json                # Yelp 2019, + business.json beside it
                                                           # (docs/method.md#datasets-and-preprocessing)
    python data/prepare.py ml-100k/ml-100k.inter           # RecBole, + ml-100k.item beside it

Item text comes from the catalog's ``*_items.jsonl`` table, or for a file from its sibling metadata file
(``meta_<Cat>.json[.gz]``, ``business.json``, RecBole ``<name>.item``); ``--item_text`` names another one.

A dataset already converted from the same source content is reused; ``--force`` converts again.

Bad input (a malformed line, a non-UTF-8 byte, a truncated ``.gz``, ...) is reported as one line on stderr,
``error: <file>:<line>: <what was expected>``, with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sracl_lightning.datasets import processed
from sracl_lightning.datasets.catalog import CATALOG, READERS, infer_item_text_kind, resolve_source
from sracl_lightning.datasets.item_text import TEXT_READERS, ItemTextSource, format_item_text_stats
from sracl_lightning.datasets.sequences import DataFormatError, format_stats


def _one_line(err: BaseException) -> str:
    """The error message on one line (some library messages span several)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help=f"catalog names ({', '.join(CATALOG)}) or file paths")
    parser.add_argument("--source_root", default="../shared/data")
    parser.add_argument("--data_root", default="data/processed")
    parser.add_argument("--format", choices=sorted(READERS), default=None, help="format of files given by path")
    parser.add_argument("--force", action="store_true", help="convert even when an up-to-date copy exists")
    parser.add_argument("--item_text", default=None, help="item-text file for the (single) dataset given")
    parser.add_argument("--item_text_kind", choices=sorted(TEXT_READERS), default=None,
                        help="how to read --item_text (inferred from meta_*, *_items.jsonl, business.json)")
    parser.add_argument("--no_item_text", action="store_true", help="convert the interactions only")
    args = parser.parse_args(argv)

    names = args.datasets or [n for n, spec in CATALOG.items() if (Path(args.source_root) / spec.path).is_file()]
    if not names:
        parser.error(f"no dataset given and none of the catalog files exists under {args.source_root}")
    if args.item_text is not None and (len(names) != 1 or args.no_item_text):
        parser.error("--item_text needs exactly one dataset, and no --no_item_text")
    for dataset in names:
        try:
            resolved = resolve_source(dataset, args.source_root, args.format)
            text = resolved.item_text
            if args.item_text is not None:
                text = ItemTextSource(Path(args.item_text),
                                      args.item_text_kind or infer_item_text_kind(Path(args.item_text)))
            if args.no_item_text:
                text = None
            directory, stats, converted = processed.prepare(
                resolved.name, resolved.path, resolved.format, Path(args.data_root), force=args.force, item_text=text
            )
        except (DataFormatError, FileNotFoundError, ValueError) as err:
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 1
        except (OSError, EOFError, OverflowError, UnicodeError) as err:
            # The readers turn bad input into DataFormatError; this is the net for anything they missed, so that the
            # message still names the dataset instead of ending in a traceback.
            print(f"error: {dataset}: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
            return 1
        name = resolved.name
        note = CATALOG[name].note if name in CATALOG else ""
        print(f"{'converted' if converted else 'up to date'}: {directory}" + (f"  ({note})" if note else ""))
        print(f"  {format_stats(name, stats)}")
        if stats.get("item_text_stats"):
            print(f"  {format_item_text_stats(stats['item_text_stats'])}  (from {stats['item_text_source']['path']})")
        else:
            print("  item text: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
