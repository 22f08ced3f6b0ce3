"""``cryodiff combine-results``: one table from several benchmark runs (maps × SNRs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path,
                        help="benchmark run folders (or their results.json files)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the markdown table here (default: print it)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every row, tagged with its source file, as one list")
    parser.add_argument("--allow-mixed-devices", action="store_true",
                        help="combine runs measured on different devices (refused otherwise); "
                             "each column then names its device")


def main(args: argparse.Namespace) -> int:
    from cryodiff.benchmark.combine import combined_markdown, load_rows
    from cryodiff.io.atomic import write_json_atomic, write_text_atomic

    from cryodiff.io.outputs import check_outputs

    check_outputs([p for p in (args.out, args.json) if p is not None], inputs=args.runs)
    rows = load_rows(args.runs, allow_mixed_devices=args.allow_mixed_devices)
    text = combined_markdown(rows)
    if args.out is None:
        print(text)
    else:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out} ({len(rows)} rows)")
    if args.json is not None:
        write_json_atomic(args.json, rows)
    return 0
