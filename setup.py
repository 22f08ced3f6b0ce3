"""Build hook: ship the tutorial notebooks inside the wheel as ``cryodiff/tutorials/``.

The checkout's ``notebooks/`` stays the one source (``NN_name.ipynb`` and its jupytext ``.py``
twin); a regular install gets a copy, which ``cryodiff notebooks --copy-to DIR`` copies out.
Everything else about the package is configured in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


class BuildPyWithTutorials(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's notebooks/ directly
        target = Path(self.build_lib) / "cryodiff" / "tutorials"
        shutil.rmtree(target, ignore_errors=True)  # no notebook left over from an older build
        target.mkdir(parents=True)
        for source in sorted(NOTEBOOKS.glob("[0-9][0-9]_*")):
            if source.suffix in (".ipynb", ".py"):
                shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildPyWithTutorials})
