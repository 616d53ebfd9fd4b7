"""Writing the cohort as a BIDS dataset, all or nothing.

Layout::

    out/dataset_description.json          Name, BIDSVersion, DatasetType, GeneratedBy (metavoxel version)
    out/README                            what the dataset is and where its ground truth lives
    out/participants.tsv                  participant_id (sub-0001 ...), age (1 decimal), sex (F/M)
    out/participants.json                 column descriptions, units and levels
    out/phantom.json                      the full config, the model constants and one truth row per subject
    out/sub-0001/anat/sub-0001_T1w.nii.gz float32, RAS+ affine in both sform and qform

Everything is written into a hidden temporary sibling ``.<name>.<random>.tmp`` and renamed onto ``out``
at the end (`metavoxel.io.staging.staged_folder`), so a failure or kill leaves no half-written dataset (at
most the hidden folder of a killed run). An existing non-empty ``out`` is refused unless ``overwrite=True``, and even then only when it is
a phantom dataset (holds phantom.json) — a guard against replacing an unrelated folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from metavoxel.errors import InputError
from metavoxel.io.atomic import write_json, write_text
from metavoxel.io.outputs import check_outputs
from metavoxel.io.staging import staged_folder
from metavoxel.phantom import anatomy, model
from metavoxel.phantom.cohort import phantom_subject
from metavoxel.phantom.config import PhantomConfig

__all__ = ["write_phantom"]

BIDS_VERSION = "1.9.0"
PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Synthetic participant, sub-0001 ... in generation order."},
    "age": {"Description": "Age at scan: truncated normal draw, rounded to 0.1 year; the image was generated at "
                           "exactly this age.", "Units": "year"},
    "sex": {"Description": "Sex drawn with P(F) = female_fraction; drives head size and shape.",
            "Levels": {"F": "female", "M": "male"}},
}


def write_phantom(out: str | Path, config: PhantomConfig, *, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  counterfactual: Mapping[str, Any] | None = None) -> Path:
    """Generate the cohort ``config`` describes and write it as a BIDS dataset at ``out``.

    Args:
        out: the dataset folder to create (its parent is created when missing).
        config: the cohort settings.
        overwrite: replace an existing phantom dataset at ``out``.
        progress: called as ``progress(done, total)`` after each subject.
        counterfactual: render every subject at other values (``{"age": "+10"}``, ``{"sex": "M"}``; see
            `metavoxel.phantom.cohort.phantom_subject`): the same subjects as the cohort without it, at those
            values. participants.tsv holds the values the images were made at; phantom.json records the
            counterfactual and each subject's drawn values (``factual``).

    Returns:
        ``out``.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder (without ``overwrite``, or not a phantom dataset),
            or holds the template, or the template cannot be used, or a bad counterfactual. Nothing is left at
            ``out`` on failure.
    """
    from metavoxel import __version__
    from metavoxel.io.nifti_write import write_nifti

    out = Path(out).expanduser()
    _check_target(out, overwrite)
    check_outputs([("the template", config.template)], folders=[("the output folder", out)])
    if counterfactual:  # a bad counterfactual is refused before anything is created
        from metavoxel.phantom.model import counterfactual_values

        counterfactual_values(70.0, "F", counterfactual)
    if config.template is not None:  # fail on a bad template before creating anything
        from metavoxel.phantom.template import load_template

        load_template(config.template, config)
    with staged_folder(out) as staging:  # all or nothing: swapped in for out once every file is written
        rows, truth = [], []
        for index in range(config.subjects):
            subject = phantom_subject(config, index, counterfactual=counterfactual)
            sub = subject.participant_id
            write_nifti(staging / sub / "anat" / f"{sub}_T1w.nii.gz", subject.image, subject.affine)
            rows.append(f"{sub}\t{subject.age:.1f}\t{subject.sex}\n")
            truth.append({"participant_id": sub, **subject.truth})
            if progress is not None:
                progress(index + 1, config.subjects)
        write_text(staging / "participants.tsv", "participant_id\tage\tsex\n" + "".join(rows))
        write_json(staging / "participants.json", PARTICIPANTS_JSON)
        write_json(staging / "dataset_description.json", _description(config, __version__))
        write_text(staging / "README", _readme(config))
        write_json(staging / "phantom.json", {"generator": f"metavoxel {__version__}",
                                              "config": config.model_dump(mode="json"), "model": _constants(),
                                              **({"counterfactual": dict(counterfactual)} if counterfactual else {}),
                                              "subjects": truth})
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file; give a folder path for the BIDS dataset")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"output folder {str(out)!r} exists and is not empty; choose a new folder or pass "
                         "overwrite=True (--overwrite) to replace a previous phantom")
    if not (out / "phantom.json").is_file():
        raise InputError(f"refusing to overwrite {str(out)!r}: it is not a phantom dataset (no phantom.json); "
                         "remove it yourself or choose another folder")


def _description(config: PhantomConfig, version: str) -> dict[str, Any]:
    return {
        "Name": f"metavoxel synthetic T1w phantom (seed {config.seed}, {config.subjects} subjects)",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [{"Name": "metavoxel", "Version": version,
                         "Description": "metavoxel phantom: deterministic synthetic skull-stripped T1w cohort with "
                                        "documented age and sex effects; ground truth in phantom.json"}],
    }


def _readme(config: PhantomConfig) -> str:
    anatomy_kind = f"the template {config.template}" if config.template else "a procedural brain"
    return (f"Synthetic skull-stripped T1w-like cohort written by `metavoxel phantom` ({anatomy_kind}).\n"
            "Not real data. Each image was generated from its participant's age and sex plus random nuisance;\n"
            "phantom.json holds the settings and every subject's ground-truth parameters. See docs/phantom.md.\n")


def _constants() -> dict[str, Any]:
    """The model's fixed numbers, so phantom.json alone documents how the images were made."""
    return {
        "u": "(age - 40) / 55", "x": "age_effect * u", "c": "sex_effect * (+1 M, -1 F)",
        "intensity": model.INTENSITY,
        "ventricle_scale": f"(1 + {model.VENTRICLE_GROWTH} x) exp(jitter)",
        "cortical_thickness_mm": f"{model.THICKNESS_MM} (1 - {model.THINNING} x) exp(jitter) * head_scale",
        "sulcal_width_mm": f"({model.SULCUS_MM} + {model.SULCUS_GROWTH} x) exp(jitter) * head_scale",
        "external_csf_mm": f"({model.EXTERNAL_MM} + {model.EXTERNAL_GROWTH} x) * head_scale",
        "gm_intensity": f"g + {model.CONTRAST_LOSS} x (1 - g) + jitter, g = {model.INTENSITY['gm']}",
        "template_brain_shrink": f"1 - {model.BRAIN_SHRINK} x",
        "sex_scale": f"{model.SEX_SIZE} ** (c / 2)",
        "sex_aspect_lr_ap_is": f"({model.SEX_ASPECT} ** -c, {model.SEX_ASPECT} ** c, 1)",
        "nuisance_sd_at_variability_1": model.SD,
        "envelope_semi_axes_mm": anatomy.ENVELOPE_MM, "ventricle": anatomy.VENTRICLE, "deep_gm": anatomy.DEEP_GM,
    }
