"""The ``cryodiff`` command line: one module per subcommand, each with ``add_args`` and ``main``.

Command modules are imported only when their command runs, so ``cryodiff info`` does not pay
for importing the diffusion model. A :class:`~cryodiff.errors.CryodiffError` raised anywhere
below is printed as one line (``cryodiff: error: FILE: problem``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from cryodiff import __version__
from cryodiff.errors import CryodiffError

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
}


def _module_name(command: str) -> str:
    return "cryodiff.cli." + command.replace("-", "_")


def _available_commands() -> dict[str, str]:
    return {name: text for name, text in COMMANDS.items()
            if importlib.util.find_spec(_module_name(name)) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryodiff", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cryodiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in _available_commands().items():
        module = importlib.import_module(_module_name(name))
        command_parser = sub.add_parser(name, help=text, description=text)
        module.add_args(command_parser)
        command_parser.set_defaults(_main=module.main)
    return parser


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Build a parser that imports only the command named in ``argv`` (fast start-up)."""
    commands = _available_commands()
    name = next((a for a in argv if not a.startswith("-")), None)
    if name not in commands:
        return build_parser()
    parser = argparse.ArgumentParser(prog="cryodiff")
    parser.add_argument("--version", action="version", version=f"cryodiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    module = importlib.import_module(_module_name(name))
    command_parser = sub.add_parser(name, help=commands[name], description=commands[name])
    module.add_args(command_parser)
    command_parser.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser_for(argv).parse_args(argv)
    try:
        result = args._main(args)
    except CryodiffError as error:
        print(f"cryodiff: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cryodiff: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
