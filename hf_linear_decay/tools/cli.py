"""`hf-linear-decay` command line (also `python -m hf_linear_decay`). It never imports torch or transformers.

Subcommands (the table `SUBCOMMANDS`: each a function that adds its arguments and one that runs it):
- `refine INPUT -o OUT [--method M] [--tau 0.1] [--norm l1|l2] [--power P] [--option NAME=VALUE] [--column NAME]`:
  build a schedule file from any input `files.readers.INPUT_FORMATS` reads;
- `export FILE [--column multipliers]`: print one column as CSV (`step,<column>`), full float precision;
- `inspect FILE [--json]`: peak, warm-up, distance from pass 1's schedule, skipped steps, metadata;
- `plot FILE -o PNG`: raw and smoothed norms, and the refined schedule beside pass 1's and cosine;
- `compare RUN... [-o PNG]`: LR, train and eval loss of several runs from their trainer_state.json, and a table.

Exit codes: 0 on success; 2 on bad usage or bad input, with one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import commands
from .commands import PROG, UsageError
from .output import OutputError, one_line, print_checked


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class Subcommand:
    help: str
    description: str
    add_arguments: Callable
    run: Callable


SUBCOMMANDS = {
    "refine": Subcommand(
        "build a refined schedule file from recorded gradient norms",
        "Build a refined schedule file. INPUT is read by content, never by name: {formats}. The output may not be "
        "the input or anything but a regular file; a symbolic link is written through to its target.",
        commands.refine_arguments, commands.refine),
    "export": Subcommand("print one column of a schedule file", "", commands.export_arguments, commands.export),
    "inspect": Subcommand("summarize a schedule file", "", commands.inspect_arguments, commands.inspect),
    "plot": Subcommand("plot norms and the refined schedule", "", commands.plot_arguments, commands.plot),
    "compare": Subcommand("compare runs: LR, train and eval loss curves and a table",
                          "Compare Trainer runs from their trainer_state.json (a run directory, its latest "
                          "checkpoint, or the file itself): a table of final and best eval loss relative to the first "
                          "run, and with -o a figure of the LR, train and eval loss.", commands.compare_arguments,
                          commands.compare),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Refined linear-decay learning-rate schedules (arXiv 2310.07831).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from ..files.readers import INPUT_FORMATS

    formats = "; ".join(f"a {kind.name} ({kind.what})" for kind in INPUT_FORMATS)  # the readers' table, not a copy
    for name, command in SUBCOMMANDS.items():
        command.add_arguments(subparsers.add_parser(name, help=command.help,
                                                    description=command.description.format(formats=formats) or None))
    return parser


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


#: Flags whose value is a number: `--tau -inf` is the flag and its (bad) value, not two flags.
NUMBER_FLAGS = ("--tau", "--power")


def _join_negative_numbers(argv: list[str]) -> list[str]:
    """`["--tau", "-inf"]` -> `["--tau=-inf"]`, so that argparse checks the value instead of reading a flag."""
    out, index = [], 0
    while index < len(argv):
        if argv[index] in NUMBER_FLAGS and index + 1 < len(argv) and argv[index + 1].startswith("-"):
            try:
                float(argv[index + 1])
            except ValueError:
                pass
            else:
                out.append(f"{argv[index]}={argv[index + 1]}")
                index += 2
                continue
        out.append(argv[index])
        index += 1
    return out


def _main(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_numbers(list(sys.argv[1:] if argv is None else argv)))
        if args.command is None:
            raise UsageError(f"{PROG}: error: a COMMAND is required: {', '.join(SUBCOMMANDS)} (see `{PROG} --help`)")
        SUBCOMMANDS[args.command].run(args)
        print_checked(None)  # flush: a full disk or a closed stdout is an error, not a silent truncation
        return 0
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other command-line tools do on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except UsageError as error:
        print(one_line(str(error)), file=sys.stderr)
        return 2
    except OutputError as error:
        print(f"{PROG}: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except (ValueError, OSError, ImportError, MemoryError, RecursionError) as error:
        # Our validation errors are ValueErrors that already name the file, the field and the fix.
        print(f"{PROG}: error: {one_line(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
