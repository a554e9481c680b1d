"""``python -m b2bd.sample``: write deterministic fictional school export folders (see
:mod:`b2bd.sample`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from b2bd.sample.school import DEFAULT_UNTIL, SchoolSpec
from b2bd.sample.writers import Counts, write_examples, write_export, write_la_outbound


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def _laestab(text: str) -> str:
    if len(text) != 7 or not text.isdigit():
        raise argparse.ArgumentTypeError(f"a LAESTAB is 7 digits: {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m b2bd.sample",
        description="Write deterministic fictional school export folders.",
        allow_abbrev=False,
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (created)")
    parser.add_argument("--laestab", type=_laestab, default="8814001")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pupils", type=int, default=300)
    parser.add_argument("--phase", choices=("primary", "secondary"), default="secondary")
    parser.add_argument("--mis", choices=("sims", "sims-primary"), default="sims")
    parser.add_argument("--sims-version", default="7.214")
    parser.add_argument("--services-manager", choices=("running", "stopped"), default="running")
    parser.add_argument(
        "--from",
        dest="marks_from",
        type=_date,
        default=None,
        help="first day of marks (default: 1 Sep of the previous academic year)",
    )
    parser.add_argument(
        "--until",
        type=_date,
        default=DEFAULT_UNTIL,
        help=f"last day of marks (default {DEFAULT_UNTIL})",
    )
    parser.add_argument(
        "--la-outbound",
        action="store_true",
        help="write LA change records into OUT_DIR/outbound/<laestab>/ instead",
    )
    parser.add_argument("--examples", action="store_true",
                        help="regenerate every example school under OUT_DIR")  # fmt: skip
    args = parser.parse_args(argv)
    if args.examples:
        for laestab, counts in write_examples(args.out_dir).items():
            print(f"{laestab}: {_describe(counts)}")
        return 0
    spec = SchoolSpec(
        laestab=args.laestab,
        phase=args.phase,
        pupils=args.pupils,
        seed=args.seed,
        marks_from=args.marks_from,
        marks_until=args.until,
        mis=args.mis,
        sims_version=args.sims_version,
        services_manager=args.services_manager,
    )
    if args.la_outbound:
        counts = write_la_outbound(args.out_dir, spec)
    else:
        counts = write_export(args.out_dir, spec)
    print(f"{args.out_dir}: {_describe(counts)}")
    return 0


def _describe(counts: Counts) -> str:
    return (
        f"{counts.pupils} pupils, {counts.marks} marks, {counts.results} results, "
        f"{counts.deletions} deletions"
    )


if __name__ == "__main__":
    sys.exit(main())
