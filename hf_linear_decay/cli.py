"""`hf-linear-decay` command line (also `python -m hf_linear_decay`).

Subcommands:
- `refine INPUT -o OUT [--tau 0.1] [--norm l1|l2] [--power P] [--column NAME]`: build a schedule file from a schedule
  file (re-refined from its raw norms), a Trainer `trainer_state.json` or a CSV/text file of norms;
- `export FILE --csv [--column multipliers]`: print one column, one value per line, full float precision;
- `inspect FILE [--json]`: peak, warm-up, distance from linear decay, skipped steps, metadata;
- `plot FILE -o PNG`: raw and smoothed norms, and the refined schedule beside linear and cosine decay.

Exit codes: 0 on success; 2 on bad usage or bad input, with one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .constants import DEFAULT_TAU, SCHEDULE_FILE_NAME

PROG = "hf-linear-decay"


class UsageError(Exception):
    """Bad usage or bad input: printed as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _tau(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tau must be a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"--tau must be in (0, 1] (a fraction of the run), got {text}")
    return value


def _power(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--power must be a number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"--power must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Refined linear-decay learning-rate schedules (arXiv 2310.07831).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    refine = commands.add_parser(
        "refine",
        help="build a refined schedule file from recorded gradient norms",
        description="Build a refined schedule file. INPUT is a schedule file (re-refined from its raw norms), a Trainer "
        "trainer_state.json (its logged pre-clip l2 `grad_norm`, interpolated between logging steps) or a CSV/text "
        "file of norms (one per line, or a named column such as a W&B export).",
    )
    refine.add_argument("input", metavar="INPUT")
    refine.add_argument("-o", "--output", default=SCHEDULE_FILE_NAME, help=f"output file (default: {SCHEDULE_FILE_NAME})")
    refine.add_argument("--tau", type=_tau, default=None,
                        help=f"median-filter window as a fraction of the run, in (0, 1] (default: the input file's, else {DEFAULT_TAU})")
    refine.add_argument("--norm", choices=("l1", "l2"), default=None,
                        help="norm to refine from: l1 (Adam, Alg. 2) or l2 (SGD, Alg. 1); for CSV input, what the values are")
    refine.add_argument("--power", type=_power, default=None, help="weight power p (default: 2 for l2, 1 for l1)")
    refine.add_argument("--column", default=None, help="CSV column holding the norms (default: the only non-step column)")

    export = commands.add_parser("export", help="print one column of a schedule file")
    export.add_argument("file", metavar="FILE")
    export_format = export.add_mutually_exclusive_group(required=True)
    export_format.add_argument("--csv", action="store_true", help="one value per line, full float precision")
    export.add_argument("--column", default="multipliers",
                        choices=("multipliers", "grad_norm_l2", "grad_norm_l1", "lr", "skipped"),
                        help="column to print (default: multipliers)")

    inspect = commands.add_parser("inspect", help="summarize a schedule file")
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    plot = commands.add_parser("plot", help="plot norms and the refined schedule")
    plot.add_argument("file", metavar="FILE")
    plot.add_argument("-o", "--output", required=True, help="image file to write (PNG, SVG or PDF)")
    return parser


def _format_value(value) -> str:
    # repr of a Python float is the shortest string that reads back to the same double.
    return repr(float(value)) if not isinstance(value, (bool, int)) else str(int(value))


def _run(args) -> int:
    from .norm_sources import read_norm_record
    from .schedule_file import load_schedule_file, save_schedule_file
    from .summary import format_summary, summarize_schedule

    if args.command == "refine":
        record = read_norm_record(args.input, column=args.column, norm=args.norm)
        tau = args.tau if args.tau is not None else (record.default_tau or DEFAULT_TAU)
        schedule = record.to_schedule_file(norm=args.norm, tau=tau, power=args.power)
        save_schedule_file(schedule, args.output)
        for note in record.notes:
            print(f"note: {note}", file=sys.stderr)
        summary = summarize_schedule(schedule)
        print(
            f"wrote {args.output}: T={schedule.num_steps}, {schedule.norm} norms, power {schedule.power:g}, "
            f"tau {schedule.tau:g}, peak at step {summary['peak_step']} ({100 * summary['peak_fraction']:.1f}%), "
            f"{summary['skipped_steps']} skipped step(s) filled from neighbours"
        )
    elif args.command == "export":
        schedule = load_schedule_file(args.file)
        column = args.column
        if column in ("grad_norm_l2", "grad_norm_l1", "lr") and column not in schedule.recorded:
            raise UsageError(f"{args.file}: column {column!r} was not recorded in this file (it has {list(schedule.recorded)}).")
        values = getattr(schedule, column)
        sys.stdout.write("".join(_format_value(v) + "\n" for v in values.tolist()))
    elif args.command == "inspect":
        summary = summarize_schedule(load_schedule_file(args.file))
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    elif args.command == "plot":
        from .plot import plot_schedule

        print(f"wrote {plot_schedule(load_schedule_file(args.file), args.output)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-linear-decay`; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return _run(args)
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return 2
    except (ValueError, OSError, ImportError) as error:
        # Our validation errors are ValueErrors that already name the file, the field and the fix.
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
