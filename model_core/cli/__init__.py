"""Model-side `lpm` commands as argparse registrars.

Each module exposes `register(subparsers)`, which adds its parser with
`set_defaults(func=run)`; `run(args) -> int` returns the exit status and raises
`errors.UsageError` on bad input. Registrar modules import only argparse-level code at the
top, so `lpm --help` stays fast; torch and the model are imported inside `run`.

`services/cli.py` (the `lpm` entry point) mounts these; `python -m model_core.cli` mounts the
model commands alone, the same way, for use without the services package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from model_core.cli import bench, demo, model_info, perform
from model_core.cli.errors import UsageError

# Registrars of the model-side commands, in `lpm --help` order.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    perform.register,
    demo.register,
    model_info.register,
    bench.register,
]


class OneLineArgumentParser(argparse.ArgumentParser):
    """Argument errors as one line, `lpm <cmd>: error: <msg>`, exit 2 (no usage dump).

    Sub-parsers inherit the class from `add_subparsers`, so every command behaves the same.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def command_name(args: argparse.Namespace, prog: str = "lpm") -> str:
    """`lpm perform`, `lpm bench realtime`: the prog of the parser that matched."""
    return getattr(args, "_prog", None) or prog


def run_command(args: argparse.Namespace, prog: str = "lpm") -> int:
    """Run the matched command; UsageError -> one line on stderr and status 2."""
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"{command_name(args, prog)}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command_name(args, prog)}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None, prog: str = "lpm") -> int:
    parser = OneLineArgumentParser(prog=prog, description="LPM model commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    args = parser.parse_args(argv)
    return run_command(args, prog)
