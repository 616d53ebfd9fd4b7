"""Run directories are read without the trainer: `metavoxel.runs` owns loading, training re-exports it."""

from __future__ import annotations

import subprocess
import sys


def test_sampling_prediction_and_evaluation_do_not_import_the_trainer():
    code = ("import sys\n"
            "import metavoxel.cli.main, metavoxel.workflows.sample, metavoxel.workflows.predict\n"
            "import metavoxel.workflows.evaluate, metavoxel.evaluation, metavoxel.runs\n"
            "print(sorted(n for n in sys.modules if n.startswith('metavoxel.training')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_old_imports_of_load_run_keep_working():
    import metavoxel.runs as runs
    from metavoxel.training import load_run
    from metavoxel.training.checkpoint import load_weights, save_spec

    assert load_run is runs.load_run and load_weights is runs.load_weights and save_spec is runs.save_spec
