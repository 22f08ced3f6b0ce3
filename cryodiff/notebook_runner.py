"""Execute the tutorial notebooks headless with papermill, in order, into one run folder.

Every notebook's ``parameters`` cell holds small CPU defaults (the ``ci`` preset); larger
presets override some of them here, so the paper's scale is one argument away
(``cryodiff notebooks --preset gpu-paper``). Each notebook writes its outputs under the
``run_dir`` it is given and a ``NN_name.json`` summary of what it measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryodiff.errors import CryodiffError

# Overrides of the notebooks' own (ci-sized) parameters, per preset and notebook stem.
PRESET_PARAMETERS: dict[str, dict[str, dict]] = {
    "ci": {},
    "cpu-small": {
        "01_simulate_projections": {"box": 64, "n_particles": 5000},
        "02_train_diffusion": {"preset": "cpu-small"},
        "03_denoise_and_compare": {"n_train": 4096, "n_test_2d": 128, "n_test_3d": 4000,
                                   "train_steps": 4000},
        "04_reconstruct_and_fsc": {"box": 64, "n_particles": 5000},
        "05_real_particles": {"box": 64, "n_simulated": 4096, "train_preset": "cpu-small",
                              "train_steps": 4000, "post_train_steps": 800,
                              "post_n_samples": 1024},
    },
    "gpu-medium": {
        "01_simulate_projections": {"box": 128, "n_particles": 10000},
        "02_train_diffusion": {"preset": "gpu-medium"},
        "03_denoise_and_compare": {"n_train": 20000, "n_test_2d": 256, "n_test_3d": 5000,
                                   "train_steps": 8000, "sr3_steps": [10, 50, 250]},
        "04_reconstruct_and_fsc": {"box": 128, "n_particles": 10000},
    },
    "gpu-paper": {
        "01_simulate_projections": {"box": 128, "n_particles": 20000},
        "02_train_diffusion": {"preset": "gpu-paper"},
        "03_denoise_and_compare": {"n_train": 50000, "n_test_2d": 512, "n_test_3d": 10000,
                                   "train_steps": 20000, "sr3_steps": [10, 50, 250],
                                   "methods": ["lowpass", "wiener", "bm3d", "topaz", "noise2noise",
                                               "supervised", "cwf", "sr3"]},
        "04_reconstruct_and_fsc": {"box": 128, "n_particles": 20000},
        # The paper's real experiment: first `cryodiff fetch EMD-8511` and
        # `cryodiff fetch EMPIAR-10081 --particles 2000` (default cache folders below).
        "05_real_particles": {
            "star": "~/.cache/cryodiff/EMPIAR-10081/particles_first2000.star",
            "map_path": "~/.cache/cryodiff/EMD-8511/emd_8511.map", "map_pixel_size_A": None,
            "particle_diameter_A": 160.0, "box": 128, "n_simulated": 50000,
            "train_preset": "gpu-paper", "train_steps": 20000, "post_train_steps": 2000,
            "post_n_samples": 2048, "n_particles": 2000},
    },
}


def notebooks_folder() -> Path:
    """The tutorial notebooks: a source checkout's ``notebooks/``, else the copy installed with
    the package (``cryodiff/tutorials/``, put in the wheel by setup.py)."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "notebooks"
    if (package.parent / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    if (package / "tutorials").is_dir():
        return package / "tutorials"
    raise CryodiffError("no tutorial notebooks: not a source checkout (no notebooks/ beside the "
                        "package) and none installed with it (cryodiff/tutorials/)", path=package)


def resolve_run_dir(run_dir: str | Path, cwd: Path | None = None) -> Path:
    """A notebook's ``run_dir`` parameter as a path: relative folders are taken from the
    repository root, also when the kernel runs in ``notebooks/`` (JupyterLab starts it in the
    notebook's folder), so ``runs/notebooks`` never lands in ``notebooks/runs/``."""
    run_dir = Path(run_dir)
    if run_dir.is_absolute():
        return run_dir
    cwd = Path.cwd() if cwd is None else Path(cwd)
    return (cwd.parent if cwd.name == "notebooks" else cwd) / run_dir


def discover_notebooks(folder: Path | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks of ``folder``, in pipeline order."""
    folder = notebooks_folder() if folder is None else Path(folder)
    if not folder.is_dir():
        raise CryodiffError("notebooks folder not found", path=folder)
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(stem: str, preset: str, run_dir: Path, **overrides) -> dict:
    """Papermill parameters for one notebook: the preset's overrides, ``run_dir``, extras."""
    if preset not in PRESET_PARAMETERS:
        raise CryodiffError(f"unknown preset {preset!r}; choose one of {sorted(PRESET_PARAMETERS)}")
    return {**PRESET_PARAMETERS[preset].get(stem, {}), "run_dir": str(run_dir), **overrides}


def run_notebook(notebook: Path, run_dir: Path, parameters: dict, kernel: str = "python3") -> dict:
    """Execute one notebook into ``run_dir/executed/`` and return its JSON summary (or {})."""
    import papermill

    run_dir = Path(run_dir).resolve()
    executed = run_dir / "executed" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                   kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False)
    except papermill.PapermillExecutionError as error:
        raise CryodiffError(f"cell {error.exec_count} failed with {error.ename}: {error.evalue} "
                            f"(see the executed notebook {executed})", path=notebook) from None
    summary = run_dir / f"{notebook.stem}.json"
    return json.loads(summary.read_text()) if summary.exists() else {}


def run_notebooks(run_dir: Path, preset: str = "ci", names: list[str] | None = None,
                  folder: Path | None = None, kernel: str = "python3") -> dict[str, dict]:
    """Run every notebook (or those whose stem starts with one of ``names``) in order.

    Returns ``{stem: {"seconds": …, "summary": {...}}}`` and writes it to
    ``run_dir/notebooks.json``.
    """
    from cryodiff.io.atomic import write_json_atomic

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    for notebook in discover_notebooks(folder):
        if names and not any(notebook.stem.startswith(n) for n in names):
            continue
        print(f"[cryodiff] running {notebook.name} (preset {preset}) …", flush=True)
        start = time.perf_counter()
        summary = run_notebook(notebook, run_dir, notebook_parameters(notebook.stem, preset, run_dir),
                               kernel)
        report[notebook.stem] = {"seconds": round(time.perf_counter() - start, 1), "summary": summary}
        print(f"[cryodiff] {notebook.name} done in {report[notebook.stem]['seconds']} s", flush=True)
        write_json_atomic(run_dir / "notebooks.json", report)
    return report
