"""The course around the notebooks: exercise solutions, one module per notebook.

Each notebook ``NN_name`` ends with exercises (cells tagged ``exercise``) and concept checks
(tagged ``concept-check``). Their solutions live here, where the test suite runs them
(``tests/test_course.py``), so a broken solution fails CI like any other code; a notebook
prints a solution's source only when its ``show_solutions`` parameter is true.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

# notebook stem -> module holding its exercises' solutions
SOLUTION_MODULES = {
    "01_simulate_projections": "cryodiff.course.simulate",
    "02_train_diffusion": "cryodiff.course.train",
    "03_denoise_and_compare": "cryodiff.course.compare",
    "04_reconstruct_and_fsc": "cryodiff.course.reconstruct",
    "05_real_particles": "cryodiff.course.real",
}


def solutions_for(stem: str) -> ModuleType | None:
    """The solutions module of notebook ``stem``, or None when it has none yet."""
    name = SOLUTION_MODULES.get(stem)
    return None if name is None else importlib.import_module(name)


def show_solution(function) -> None:
    """Print a solution's source (what a notebook shows when ``show_solutions`` is true)."""
    print(inspect.getsource(function))
