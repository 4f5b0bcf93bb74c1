"""``airflow-kaniko``: the package's core outside Airflow (render, pack, verify).

Each command lives in ``airflow_kaniko/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Invalid input exits with status 2 and one line on stderr that names
the bad value; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from airflow_kaniko import __version__
from airflow_kaniko.errors import InvalidInputError, KanikoError

__all__ = ["main"]

COMMANDS = ("render", "pack", "verify")
EXIT_INVALID = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage plus the message; one line is what scripts can parse.
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="airflow-kaniko", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"airflow-kaniko {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"airflow_kaniko.commands.{name}")
        except ImportError:  # a command whose optional dependencies are missing is left out
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except InvalidInputError as exc:
        print(f"airflow-kaniko {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KanikoError as exc:
        print(f"airflow-kaniko {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
