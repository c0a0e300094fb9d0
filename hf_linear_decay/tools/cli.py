"""`hf-linear-decay` command line (also `python -m hf_linear_decay`). It never imports torch or transformers.

Subcommands:
- `refine INPUT -o OUT [--method M] [--tau 0.1] [--norm l1|l2] [--power P] [--column NAME]`: build a schedule file from
  a schedule file (re-refined from its record), a Trainer `trainer_state.json` or a CSV/text file of norms;
- `export FILE --csv [--column multipliers]`: print one column, one value per line, full float precision;
- `inspect FILE [--json]`: peak, warm-up, distance from linear decay, skipped steps, metadata;
- `plot FILE -o PNG`: raw and smoothed norms, and the refined schedule beside linear and cosine decay;
- `compare RUN... [-o PNG]`: LR, train and eval loss of several runs from their trainer_state.json, and a table.

Exit codes: 0 on success; 2 on bad usage or bad input, with one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..core.methods import METHODS, RefinementSettings
from ..core.norms import NORM_TYPES
from ..core.record import RECORD_COLUMNS
from ..core.refine import check_power, check_tau
from ..files.schedule_file import SCHEDULE_FILE_NAME

PROG = "hf-linear-decay"


class UsageError(Exception):
    """Bad usage or bad input: printed as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


def _checked(check, flag: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        try:
            return check(value, name=flag)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).replace(f"`{flag}`", flag, 1)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Refined linear-decay learning-rate schedules (arXiv 2310.07831).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    refine = commands.add_parser(
        "refine", help="build a refined schedule file from recorded gradient norms",
        description="Build a refined schedule file. INPUT is a schedule file (re-refined from its record), a Trainer "
        "trainer_state.json (RefinementCallback's exact record if the run had one, else the logged pre-clip l2 "
        "`grad_norm`, interpolated between logging steps) or a CSV/text file of norms (one per line, or a named "
        "column such as a W&B export).")
    refine.add_argument("input", metavar="INPUT")
    refine.add_argument("-o", "--output", default=SCHEDULE_FILE_NAME, help=f"output file (default: {SCHEDULE_FILE_NAME})")
    refine.add_argument("--method", choices=tuple(METHODS), default=None, help="refinement method (default: the input "
                        "file's, else the package default)")
    refine.add_argument("--tau", type=_checked(check_tau, "--tau"), default=None,
                        help="median-filter window as a fraction of the run, in (0, 1] (default: the input file's, else 0.1)")
    refine.add_argument("--norm", choices=tuple(NORM_TYPES), default=None,
                        help="norm to refine from: l1 (Adam, Alg. 2) or l2 (SGD, Alg. 1); for CSV input, what the values "
                        "are (default: from the recorded optimizer, else the one norm recorded)")
    refine.add_argument("--power", type=_checked(check_power, "--power"), default=None,
                        help="weight power p (default: 2 for l2, 1 for l1)")
    refine.add_argument("--column", default=None, help="CSV column holding the norms (default: the only non-step column)")
    refine.add_argument("--force", action="store_true", help="refine even when more than a quarter of the steps were "
                        "skipped or non-finite (a diverged run)")

    export = commands.add_parser("export", help="print one column of a schedule file")
    export.add_argument("file", metavar="FILE")
    export_format = export.add_mutually_exclusive_group(required=True)
    export_format.add_argument("--csv", action="store_true", help="one value per line, full float precision")
    export.add_argument("--column", default="multipliers", choices=("multipliers", *RECORD_COLUMNS, "skipped"),
                        help="column to print (default: multipliers)")

    inspect = commands.add_parser("inspect", help="summarize a schedule file")
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    compare = commands.add_parser("compare", help="compare runs: LR, train and eval loss curves and a table",
                                  description="Compare Trainer runs from their trainer_state.json (a run directory, "
                                  "its latest checkpoint, or the file itself): a table of final and best eval loss "
                                  "relative to the first run, and with -o a figure of the LR, train and eval loss.")
    compare.add_argument("runs", metavar="RUN", nargs="+")
    compare.add_argument("-o", "--output", default=None, help="image file to write (PNG, SVG or PDF)")

    plot = commands.add_parser("plot", help="plot norms and the refined schedule")
    plot.add_argument("file", metavar="FILE")
    plot.add_argument("-o", "--output", required=True, help="image file to write (PNG, SVG or PDF)")
    return parser


def _write_column(values) -> None:
    # repr of a Python float is the shortest string that reads back to the same double; write in chunks.
    chunk = 1 << 16
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk].tolist()
        sys.stdout.write("\n".join(map(repr, part)) + "\n")


def _run(args) -> int:
    from ..core.methods import build_schedule
    from ..files.schedule_file import load_schedule_file, save_schedule_file
    from .summary import format_summary, summarize_schedule

    if args.command == "refine":
        from ..files.readers import read_record

        record, settings = read_record(args.input, column=args.column, norm=args.norm)
        settings = (settings or RefinementSettings()).updated(method=args.method, norm=args.norm, tau=args.tau,
                                                               power=args.power)
        schedule = build_schedule(record, settings, force=args.force)
        save_schedule_file(schedule, args.output)
        for note in record.notes:
            print(f"note: {note}", file=sys.stderr)
        summary = summarize_schedule(schedule)
        print(f"wrote {args.output}: T={schedule.num_steps}, method {schedule.method}, {schedule.norm} norms, power "
              f"{schedule.power:g}, tau {schedule.tau:g}, peak at step {summary['peak_step']} "
              f"({100 * summary['peak_fraction']:.1f}%), {summary['skipped_steps']} skipped or invalid step(s) filled "
              "from neighbours")
    elif args.command == "export":
        schedule = load_schedule_file(args.file)
        if args.column in RECORD_COLUMNS and args.column not in schedule.recorded:
            raise UsageError(f"{args.file}: column {args.column!r} was not recorded in this file (it has "
                             f"{list(schedule.recorded)}).")
        values = schedule.multipliers if args.column == "multipliers" else getattr(schedule.record, args.column)
        _write_column(values.astype(int) if args.column == "skipped" else values)
    elif args.command == "inspect":
        summary = summarize_schedule(load_schedule_file(args.file))
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    elif args.command == "compare":
        from .curves import compare_table, plot_runs, read_run

        runs = [read_run(run) for run in args.runs]
        print(compare_table(runs))
        if args.output:
            print(f"wrote {plot_runs(runs, args.output)}")
    elif args.command == "plot":
        from .plot import plot_schedule

        print(f"wrote {plot_schedule(load_schedule_file(args.file), args.output)}")
    return 0


class _NoteHandler(logging.Handler):
    """The package's warnings (e.g. many skipped steps) as `note:` lines on stderr."""

    def emit(self, record):
        print(f"note: {record.getMessage()}", file=sys.stderr)


_NOTES = _NoteHandler(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-linear-decay`; returns the exit code."""
    package_logger = logging.getLogger("hf_linear_decay")
    level = package_logger.level
    package_logger.addHandler(_NOTES)  # the CLI's notes (what the refinement did and why), for this command only
    package_logger.setLevel(logging.INFO)
    try:
        return _main(argv)
    finally:
        package_logger.removeHandler(_NOTES)
        package_logger.setLevel(level)


def _main(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(f"{PROG}: error: a COMMAND is required: refine, export, inspect, plot or compare "
                             f"(see `{PROG} --help`)")
        code = _run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other command-line tools do on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return 2
    except (ValueError, OSError, ImportError, MemoryError) as error:
        # Our validation errors are ValueErrors that already name the file, the field and the fix.
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
