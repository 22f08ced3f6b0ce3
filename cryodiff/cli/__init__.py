"""The ``cryodiff`` command line: one module per subcommand, each with ``add_args`` and ``main``.

Command modules are imported only when their command runs, so ``cryodiff info`` does not pay
for importing the diffusion model. A :class:`~cryodiff.errors.CryodiffError` raised anywhere
below is printed as one line (``cryodiff: error: FILE: problem``) and exits with status 2; so is
a value refused by an argument type (:mod:`cryodiff.cli.arguments`) and an operating-system
error on a named file (permission denied, disk full). SIGTERM is handled like Ctrl-C, so
temporary files are removed either way. Before any command module (and so torch) is imported,
:func:`cryodiff.threads.configure_threads` applies the CPU thread policy (``--threads N`` on
every command).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import threading

from cryodiff import __version__
from cryodiff.errors import CryodiffError
from cryodiff.threads import configure_threads

DESCRIPTION = ("cryodiff: diffusion-based denoising of single-particle cryo-EM images "
               "(simulate, reconstruct, train, denoise, compare)")

# name -> one-line help; the module cryodiff.cli.<name> (hyphens as underscores) provides
# add_args(parser) and main(args).
COMMANDS: dict[str, str] = {
    "simulate": "simulate noisy particle images from a map (writes particles.mrcs/.star)",
    "project": "project a map at the poses of a STAR file (like relion_project)",
    "info": "describe a STAR file or an MRC map/stack",
    "reconstruct": "reconstruct a map from particles with known poses (direct Fourier inversion)",
    "fsc": "Fourier shell correlation between two maps and the resolution",
    "train": "train the conditional diffusion denoiser (and post-processor)",
    "denoise": "denoise particles with a trained checkpoint",
    "benchmark": "compare cryodiff with every baseline in 2D and 3D",
    "combine-results": "one table (maps × SNRs) from several benchmark runs' results.json",
    "notebooks": "execute every tutorial notebook headless into a run folder",
    "fetch": "download an EMDB map, an EMPIAR particle subset or a URL (hash-checked)",
}


def _module_name(command: str) -> str:
    return "cryodiff.cli." + command.replace("-", "_")


def _available_commands() -> dict[str, str]:
    return {name: text for name, text in COMMANDS.items()
            if importlib.util.find_spec(_module_name(name)) is not None}


def _add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads to compute with (default: OMP_NUM_THREADS if set, "
                             "else the cores the load average shows idle; see cryodiff.threads)")


def _requested_threads(argv: list[str]) -> int | None:
    """``--threads N`` from ``argv``, read before a command module (and torch) is imported;
    the command's own parser checks the value again."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--threads")
    value = early.parse_known_args(argv)[0].threads
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _root_parser(commands: dict[str, str], description: str | None = None
                 ) -> argparse.ArgumentParser:
    """The ``cryodiff`` parser with a subcommand for each of ``commands`` (name -> help); only
    their modules are imported."""
    parser = argparse.ArgumentParser(prog="cryodiff", description=description,
                                     exit_on_error=False)
    parser.add_argument("--version", action="version", version=f"cryodiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in commands.items():
        module = importlib.import_module(_module_name(name))
        command_parser = sub.add_parser(name, help=text, description=text, exit_on_error=False)
        module.add_args(command_parser)
        _add_threads_option(command_parser)
        command_parser.set_defaults(_main=module.main)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return _root_parser(_available_commands(), DESCRIPTION)


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Build a parser that imports only the command named in ``argv`` (fast start-up)."""
    commands = _available_commands()
    name = next((a for a in argv if not a.startswith("-")), None)
    if name not in commands:
        return build_parser()
    return _root_parser({name: commands[name]})


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """Parsed arguments; None after printing one line for a value an argument type refused.

    Other argparse errors keep argparse's usage message and SystemExit(2).
    """
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as error:
        if not isinstance(error.__context__, argparse.ArgumentTypeError):
            parser.error(str(error))
        print(f"cryodiff: error: {error}", file=sys.stderr)
        return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that ``finally`` blocks remove temporary files."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # before a command module imports torch: OpenMP reads its settings once
        configure_threads(_requested_threads(argv))
    except CryodiffError as error:
        print(f"cryodiff: error: {error}", file=sys.stderr)
        return 2
    args = _parse(_parser_for(argv), argv)
    if args is None:
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = args._main(args)
    except CryodiffError as error:
        print(f"cryodiff: error: {error}", file=sys.stderr)
        return 2
    except _Terminated:
        print("cryodiff: terminated (SIGTERM); temporary files removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("cryodiff: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        if error.filename is None:
            raise
        from cryodiff.io.atomic import describe_os_error

        print(f"cryodiff: error: {error.filename}: {describe_os_error(error)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
