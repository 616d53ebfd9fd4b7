"""``metavoxel phantom``: write a synthetic T1w cohort with known age and sex effects (a BIDS root).

A thin command over `metavoxel.phantom.write_phantom`; every value is validated by `PhantomConfig`, so
bad input (``--size 8``, ``--female-fraction 2``) is one ``error:`` line and exit code 2, with nothing
written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

_EFFECT = "multiplier of the documented effect; 0: none"


def phantom(
    out: Annotated[Path, typer.Argument(help="Dataset folder to create (a BIDS root).")],
    subjects: Annotated[int, typer.Option("--subjects", "-n", help="Participants to generate.")] = 200,
    size: Annotated[int, typer.Option(help="Grid size N (N³ voxels), 32-128; voxel = 176 mm / N.")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed; subject k depends only on (seed, k).")] = 0,
    age_mean: Annotated[float, typer.Option(help="Mean age (years) of the truncated normal.")] = 70.0,
    age_sd: Annotated[float, typer.Option(help="Age SD (years) before truncation.")] = 10.0,
    age_min: Annotated[float, typer.Option(help="Youngest age; draws below are redrawn.")] = 40.0,
    age_max: Annotated[float, typer.Option(help="Oldest age; draws above are redrawn.")] = 95.0,
    female_fraction: Annotated[float, typer.Option(help="Probability a subject is female.")] = 0.6,
    age_effect: Annotated[float, typer.Option(help=f"Age effects: {_EFFECT}.")] = 1.0,
    sex_effect: Annotated[float, typer.Option(help=f"Sex size/shape effects: {_EFFECT}.")] = 1.0,
    variability: Annotated[float, typer.Option(help="Multiplier of all between-subject nuisance (deformation, "
                                                    "scale, bias, misregistration); 0: none.")] = 1.0,
    noise: Annotated[float, typer.Option(help="Rician noise SD relative to the WM intensity (1.0).")] = 0.03,
    template: Annotated[Path | None, typer.Option(help="Skull-stripped T1 NIfTI to use as the anatomy instead of "
                                                       "the procedural brain (e.g. an MNI152 brain).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing phantom dataset at OUT.")]
    = False,
    counterfactual: Annotated[list[str] | None, typer.Option(
        "--counterfactual", help="Render every subject at another value, same anatomy and noise: age=81, age=+10 "
                                 "(from its drawn age) or sex=M; repeatable. The true counterfactual of an edit.")]
    = None,
) -> None:
    """Write a synthetic skull-stripped T1w cohort (BIDS) whose images depend on age and sex by known laws."""
    import statistics

    from metavoxel.cli.display import console, progress_bar
    from metavoxel.phantom import PhantomConfig, write_phantom
    from metavoxel.workflows.sample import parse_assignments

    config = PhantomConfig.build(subjects=subjects, size=size, seed=seed, age_mean=age_mean, age_sd=age_sd,
                                 age_range=(age_min, age_max), female_fraction=female_fraction,
                                 age_effect=age_effect, sex_effect=sex_effect, variability=variability, noise=noise,
                                 template=template)
    changes = parse_assignments(counterfactual or [], "--counterfactual")
    bar, tasks = progress_bar(), []

    def progress(done: int, total: int) -> None:
        if not tasks:  # shown from the first subject on, so a refused output prints only the error
            bar.start()
            tasks.append(bar.add_task("phantom", total=total))
        bar.update(tasks[0], completed=done, total=total)

    try:
        path = write_phantom(out, config, overwrite=overwrite, progress=progress, counterfactual=changes or None)
    finally:
        if tasks:
            bar.stop()
    rows = [line.split("\t") for line in (path / "participants.tsv").read_text().splitlines()[1:]]
    ages = [float(r[1]) for r in rows]
    spread = statistics.stdev(ages) if len(ages) > 1 else 0.0
    female = 100.0 * sum(r[2] == "F" for r in rows) / len(rows)
    console().print(f"wrote {escape(str(path))} (BIDS: participants.tsv, sub-*/anat/*_T1w.nii.gz; ground truth in phantom.json)")
    console().print(f"{len(rows)} subjects, age {statistics.fmean(ages):.1f} ± {spread:.1f} years, {female:.0f}% "
                    f"female, {config.size[0]}³ voxels of {config.voxel_mm[0]:.3g} mm")
