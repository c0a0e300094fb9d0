"""The subcommands of `hf-linear-decay`: for each, a function that adds its arguments and one that runs it.

`tools.cli.SUBCOMMANDS` registers them. No torch: the heavy parts (plotting) are imported by the command that needs
them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys

from ..core.methods import METHODS
from ..core.norms import NORM_TYPES
from ..core.record import RECORD_COLUMNS
from ..files.formats import SCHEDULE_FILE_NAME
from .output import check_output, print_checked

PROG = "hf-linear-decay"
#: A field of the refinement settings -> the flag whose value it takes (for the error messages).
FLAGS = {"method": "--method", "norm": "--norm", "tau": "--tau", "power": "--power", "options": "--option"}


class UsageError(Exception):
    """Bad usage or bad input: printed as one line on stderr, exit code 2."""


def _number(flag: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None

    return parse


def _option(text: str) -> tuple[str, object]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"--option must be NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


# ----- the subcommands ----------------------------------------------------------------------------------------------
def refine_arguments(parser) -> None:
    parser.add_argument("input", metavar="INPUT")
    parser.add_argument("-o", "--output", default=SCHEDULE_FILE_NAME, help="output file (default: "
                                                                           f"{SCHEDULE_FILE_NAME})")
    parser.add_argument("--method", choices=tuple(METHODS), default=None,
                        help="refinement method (default: the input file's, else the package default)")
    parser.add_argument("--tau", type=_number("--tau"), default=None,
                        help="median-filter window as a fraction of the run, in (0, 1] (default: the input file's, "
                             "else 0.1)")
    parser.add_argument("--norm", choices=tuple(NORM_TYPES), default=None,
                        help="norm to refine from: " + "; ".join(f"{norm.name} for {norm.pairs_with}"
                                                                  for norm in NORM_TYPES.values())
                        + "; for CSV and JSON-lines input, what the values are (default: from the recorded optimizer, "
                          "else the one norm recorded)")
    parser.add_argument("--power", type=_number("--power"), default=None,
                        help="weight power p (default: " + ", ".join(f"{norm.default_power:g} for {norm.name}"
                                                                     for norm in NORM_TYPES.values()) + ")")
    parser.add_argument("--option", type=_option, action="append", default=None, metavar="NAME=VALUE",
                        help="a parameter of the chosen method (see each method's options)")
    parser.add_argument("--column", default=None, help="CSV column or JSON-lines key holding the norms")
    parser.add_argument("--force", action="store_true", help="refine even when more than a quarter of the steps were "
                        "skipped, non-finite or never recorded")


@contextlib.contextmanager
def _flag_errors():
    """A flag's bad value, said as argparse says it: `--tau must ...`, not `` `--tau` must ...``."""
    try:
        yield
    except ValueError as error:
        raise UsageError(f"{PROG} refine: error: {re.sub(r'`(--[a-z]+)`', lambda m: m.group(1), str(error))}") from None


def refine(args) -> None:
    from ..core.describe import describe_schedule
    from ..core.schedule import build_schedule
    from ..core.settings import RefinementSettings
    from ..files.readers import read_record
    from ..files.schedule_file import save_schedule_file

    given = [name for name in ("method", "norm", "tau", "power") if getattr(args, name) is not None]
    with _flag_errors():  # the flags' values first, once, as argparse would (the options once the method is known)
        flags = RefinementSettings(names=FLAGS, **{name: getattr(args, name) for name in given})
    output = check_output(args.output, inputs=[args.input])
    record, settings = read_record(args.input, column=args.column, norm=args.norm)
    with _flag_errors():
        settings = (settings or RefinementSettings()).taking(flags, given, names=FLAGS,
                                                             options=dict(args.option) if args.option else None)
    schedule = build_schedule(record, settings, force=args.force)
    save_schedule_file(schedule, output)
    for note in record.notes:
        print(f"note: {note}", file=sys.stderr)
    if schedule.explanation:
        print(f"note: method {schedule.method!r}: {schedule.explanation}", file=sys.stderr)
    filled = int(schedule.skipped.sum())
    print_checked(f"wrote {output}: T={schedule.num_steps}, method {schedule.method}, {schedule.norm} norms, power "
                  f"{schedule.power:g}, tau {schedule.tau:g}; {describe_schedule(schedule)}; {filled} skipped or "
                  "invalid step(s) filled from neighbours")


def export_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--csv", action="store_true", help="CSV (the default and only format; kept for scripts that "
                        "pass it)")
    parser.add_argument("--column", default="multipliers", choices=("multipliers", *RECORD_COLUMNS, "skipped"),
                        help="column to print (default: multipliers)")


def export(args) -> None:
    """A CSV with a header (`step,<column>`) and one row per optimizer step, full float precision: `refine` reads it
    back with the norm its column names."""
    from ..files.schedule_file import load_schedule_file

    schedule = load_schedule_file(args.file)
    if args.column in RECORD_COLUMNS and args.column not in schedule.recorded:
        raise UsageError(f"{args.file}: column {args.column!r} was not recorded in this file (it has "
                         f"{list(schedule.recorded)}).")
    values = schedule.multipliers if args.column == "multipliers" else getattr(schedule.record, args.column)
    values = values.astype(int) if args.column == "skipped" else values
    print_checked(f"step,{args.column}")
    # repr of a Python float is the shortest string that reads back to the same double; written in chunks.
    chunk = 1 << 16
    for start in range(0, len(values), chunk):
        rows = values[start : start + chunk].tolist()
        print_checked("\n".join(f"{start + index},{value!r}" for index, value in enumerate(rows)))


def inspect_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def inspect(args) -> None:
    from ..files.schedule_file import load_schedule_file
    from .summary import format_summary, summarize_schedule

    summary = summarize_schedule(load_schedule_file(args.file))
    print_checked(json.dumps(summary, indent=2) if args.json else format_summary(summary))


def plot_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("-o", "--output", required=True, help="image file to write (PNG, SVG or PDF)")


def plot(args) -> None:
    from ..files.schedule_file import load_schedule_file
    from .plot import plot_schedule

    output = check_output(args.output, inputs=[args.file])
    print_checked(f"wrote {plot_schedule(load_schedule_file(args.file), output)}")


def compare_arguments(parser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+")
    parser.add_argument("-o", "--output", default=None, help="image file to write (PNG, SVG or PDF)")


def compare(args) -> None:
    from .curves import compare_table, plot_runs, read_run

    runs = [read_run(run) for run in args.runs]
    output = check_output(args.output, inputs=[run.path for run in runs]) if args.output is not None else None
    print_checked(compare_table(runs))
    if output:
        print_checked(f"wrote {plot_runs(runs, output)}")
