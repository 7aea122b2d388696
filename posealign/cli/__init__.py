"""The ``posealign`` console script: one module per subcommand, each with ``register(subparsers)``.

A subcommand module adds its parser in ``register`` and sets ``func`` to a function taking the
parsed arguments and returning the exit code. Subcommand modules import torch inside ``func``, not
at the top, so ``posealign --help`` answers in well under a second.

Exit codes: 0 done, 2 an error the user can fix (``UserError`` / ``DatasetFormatError``, printed as
one line), 130 interrupted by Ctrl-C, 141 output no longer read (``| head``), 1 anything unexpected
(one line on the terminal naming a log file that keeps the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

from posealign.errors import DatasetFormatError, UserError

SUBCOMMANDS = ("train", "config", "eval", "demo", "ablate", "data", "style", "predict", "export", "import", "report")


class _IntermixedSubParsers(argparse._SubParsersAction):
    """Subcommands whose options and positionals may come in any order (``key=a --out X key=b``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        name, arg_strings = values[0], values[1:]
        chosen = self._name_parser_map.get(name)
        if chosen is None or chosen._subparsers is not None:
            return super().__call__(parser, namespace, values, option_string)  # nested subcommands: plain parsing
        setattr(namespace, self.dest, name)
        subnamespace, extras = chosen.parse_known_intermixed_args(arg_strings, None)
        for key, value in vars(subnamespace).items():
            setattr(namespace, key, value)
        if extras:
            vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(extras)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subcommands parse their arguments intermixed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _IntermixedSubParsers)


def add_command_parser(subparsers, name: str, help: str, doc: str) -> argparse.ArgumentParser:
    """A subcommand's parser whose ``--help`` shows ``doc`` (its module docstring) as plain text."""
    return subparsers.add_parser(
        name, help=help, description=plain_text(doc), formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_parallel_arguments(parser: argparse.ArgumentParser, jobs: int) -> None:
    """``--jobs`` and ``--threads`` of the commands that train several runs (demo, ablate)."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=jobs,
        help=f"runs trained side by side, each in a worker process (default {jobs}; 1: one after another in this process)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per worker process (0: the cores divided among the jobs)"
    )


def plain_text(doc: str | None) -> str | None:
    """A docstring as the terminal should show it: reStructuredText's double backticks dropped."""
    return None if doc is None else doc.replace("``", "")


def package_version() -> str:
    try:
        return metadata.version("posealign")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="posealign", description="Unsupervised domain-adaptive 2D pose estimation.")
    parser.add_argument("--version", action="version", version=f"posealign {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"posealign.cli.{name}_command")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader gone early shows here, not as Python's own error at exit
        return code
    except (UserError, DatasetFormatError, FileNotFoundError) as error:
        print(f"posealign {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"posealign {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped early (`posealign config daml | head`): as for any command killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
        return 141  # 128 + SIGPIPE, what a shell reports for a command its reader cut off
    except Exception as error:  # noqa: BLE001 - the last resort: never a traceback on the terminal
        interrupted = _training_interrupted(error)
        if interrupted is not None:
            print(f"posealign {args.command}: {error}", file=sys.stderr)
            return interrupted
        log = write_traceback(error, getattr(args, "out", None))
        print(
            f"posealign {args.command}: internal error: {type(error).__name__}: {one_line(error)[:300]} "
            f"(traceback in {log}; please report it)",
            file=sys.stderr,
        )
        return 1


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _training_interrupted(error: BaseException) -> int | None:
    """The exit code for a training stopped by a signal (128 + its number), None for other errors.

    The module that defines the error is looked up, not imported: if it was never loaded (by this
    process's training, or by unpickling a worker's error), this cannot be its error.
    """
    interrupts = sys.modules.get("posealign.engine.interrupts")
    if interrupts is None or not isinstance(error, interrupts.TrainingInterrupted):
        return None
    return 128 + signal_number(error)


def signal_number(error: BaseException) -> int:
    """The signal that stopped a training (``TrainingInterrupted.signum``; SIGINT if unknown)."""
    return int(getattr(error, "signum", signal.SIGINT))


def write_traceback(error: BaseException, out: str | None) -> Path:
    """Keep the traceback of an unexpected error in ``OUT/error.log`` (when that folder exists) or a
    temporary file, and return its path."""
    text = "".join(traceback.format_exception(error))
    folder = Path(out) if out and Path(out).is_dir() else None
    if folder is not None:
        path = folder / "error.log"
        try:
            with open(path, "a") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{text}")
            return path
        except OSError:
            pass
    with tempfile.NamedTemporaryFile("w", prefix="posealign-error-", suffix=".log", delete=False) as handle:
        handle.write(text)
    return Path(handle.name)


if __name__ == "__main__":
    sys.exit(main())
