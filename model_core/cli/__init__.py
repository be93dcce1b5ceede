"""Model-side `lpm` commands as argparse registrars.

Each module exposes `register(subparsers)`, which adds its parser with
`set_defaults(func=run, _prog=parser.prog)`; `run(args) -> int` returns the exit status and
raises `errors.UsageError` on bad input. Registrar modules import only argparse-level code at
the top, so `lpm --help` stays fast; torch and the model are imported inside `run`.

`services/cli.py` (the `lpm` console script) mounts these next to the service commands;
`python -m model_core.cli` mounts the model commands alone, the same way and with the same
error handling, for use without the services package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from model_core.cli.errors import UsageError

# Same list and order as services/cli.py; a module not written yet is skipped.
MODEL_COMMANDS = ("perform", "model_info", "bench", "data", "train", "demo")


class OneLineArgumentParser(argparse.ArgumentParser):
    """Argument errors as one line, `lpm <cmd>: error: <msg>`, exit 2 (no usage dump).

    Sub-parsers inherit the class from `add_subparsers`, so every command behaves the same.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def register_model_commands(sub: argparse._SubParsersAction) -> None:
    for name in MODEL_COMMANDS:
        try:
            module = importlib.import_module(f"model_core.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"model_core.cli.{name}":
                continue
            raise
        module.register(sub)


def build_parser(prog: str = "lpm") -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog=prog, description="LPM model commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_model_commands(sub)
    return parser


def run_parsed(args: argparse.Namespace, prog: str = "lpm") -> int:
    """Run a parsed command: UsageError -> one line on stderr and status 2, Ctrl-C -> 130."""
    name = getattr(args, "_prog", None) or f"{prog} {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None, prog: str = "lpm") -> int:
    return run_parsed(build_parser(prog).parse_args(argv), prog)
