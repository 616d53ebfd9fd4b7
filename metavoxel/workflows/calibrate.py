"""A run's calibration: what `sample`, `predict` and `evaluate` compare each answer with, from the validation split.

``calibration.json`` in a run directory holds, computed on the run's validation split (records the model was
not trained on):

- ``typicality``: every validation record's typicality terms (`metavoxel.diffusion.typicality`) for each set of
  given variables a request can have (every non-empty subset of the variables for a model of at most 4, else
  all of them and all but one), the reference of `metavoxel.evaluation.typicality.TypicalityReference`; the
  image part's per-location loss maps, (n, J, *grid) float32 per set of given variables, go to the sidecar
  ``calibration.safetensors``, which ``typicality.maps`` names with its SHA-256 (a sidecar that is missing or
  differs switches typicality off with a warning); ``typicality.classes`` holds each categorical variable's mid-p
  values (for the correlations that combine its model-implied statistic with the others);
- ``bias_correction``: for each continuous scalar variable, the linear age-bias correction
  (`metavoxel.evaluation.brain_age.BiasCorrection`) of its prediction from all the other variables, per method
  (``sample``: the mean of 3 samples, `predict`'s default; ``point``, for a model trained with clean subsets);
- ``weights_sha256``: the SHA-256 of the model.safetensors it was computed with; other weights (a resumed or
  replaced model) make `load_calibration` warn and ignore the file.

`metavoxel train` writes it at the end of training; `metavoxel calibrate --model RUN` writes it for an older run
(or again). Nothing else of the run is touched. A calibration.json of an earlier format keeps its bias corrections
and gives no typicality, with one ``note:`` asking to run `metavoxel calibrate` again (`Calibration.note`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metavoxel.diffusion.typicality import TYPICALITY_LEVELS, TypicalityTerms, typicality_terms
from metavoxel.errors import InputError
from metavoxel.evaluation.brain_age import BiasCorrection
from metavoxel.evaluation.typicality import MIN_REFERENCE, TypicalityReference
from metavoxel.io.atomic import write_atomic, write_json
from metavoxel.runs import WEIGHTS_FILE, RunWarning
from metavoxel.variables.protocol import ScalarHead

__all__ = ["CALIBRATION_FILE", "MAPS_FILE", "Calibration", "calibrate_model", "calibrate_run", "given_sets",
           "linear_target", "load_calibration"]

CALIBRATION_FILE = "calibration.json"
MAPS_FILE = "calibration.safetensors"
FORMAT = 4  # 4: categorical variables by their mid-p value; 3: the image's loss maps in MAPS_FILE, a local statistic; 2: per-level typicality losses
#: The samples per record of the ``sample`` correction: `predict`'s default.
BIAS_SAMPLES = 3


@dataclass
class Calibration:
    """A run's calibration (module docstring)."""

    typicality: TypicalityReference | None
    bias: dict[str, dict[str, BiasCorrection]] = field(default_factory=dict)  # target -> method -> correction
    weights_sha256: str = ""
    n: int = 0
    note: str = ""  # why a part is off (an older calibration.json), for the commands to print once

    def correction(self, target: str, method: str) -> BiasCorrection | None:
        return self.bias.get(target, {}).get(method)

    def to_dict(self, maps_sha256: str | None = None) -> dict[str, Any]:
        """The JSON; ``maps_sha256``: the digest of the written sidecar holding the typicality's maps."""
        typ = None if self.typicality is None else self.typicality.to_dict()
        if typ is not None and maps_sha256 is not None:
            typ["maps"] = {"file": MAPS_FILE, "sha256": maps_sha256}
        return {"format": FORMAT, "weights_sha256": self.weights_sha256, "split": "val", "n": self.n,
                "typicality": typ, "bias_correction": _bias_dict(self.bias)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], maps: Mapping[str, Any] | None = None) -> Calibration:
        typ = data.get("typicality")
        return cls(None if typ is None else TypicalityReference.from_dict(typ, maps), _bias(data),
                   str(data.get("weights_sha256", "")), int(data.get("n", 0)))


def _bias_dict(bias: Mapping[str, Mapping[str, BiasCorrection]]) -> dict[str, Any]:
    return {t: {m: c.to_dict() for m, c in by.items()} for t, by in bias.items()}


def _bias(data: Mapping[str, Any]) -> dict[str, dict[str, BiasCorrection]]:
    return {t: {m: BiasCorrection.from_dict(c) for m, c in by.items()}
            for t, by in (data.get("bias_correction") or {}).items()}


def linear_target(var: Any) -> bool:
    """Whether brain-age outputs apply to ``var``: a continuous scalar with a declared range whose diffusion state is
    one number per record (not a categorical, nor e.g. a cyclic variable encoded as (sin, cos), whose difference
    wraps around)."""
    from metavoxel.variables.capabilities import HasCategories, HasValueRange

    if isinstance(var, HasCategories) or not isinstance(var, HasValueRange):
        return False
    try:
        values, _present = var.values([float(var.value_range[0])], "cpu")
        return var.encode(values).numel() == 1
    except Exception:  # a kind that cannot encode its own bound: no brain-age outputs, the answer is unaffected
        return False


def weights_digest(run_dir: Path) -> str:
    """SHA-256 (hex) of the run's model.safetensors."""
    return _digest(Path(run_dir) / WEIGHTS_FILE)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def given_sets(names: Sequence[str]) -> list[tuple[str, ...]]:
    """The sets of given variables the reference covers: every non-empty subset for <= 4 variables, else all of
    them and each set of all but one."""
    names = list(names)
    if len(names) <= 4:
        return [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    return [tuple(names)] + [tuple(n for n in names if n != left) for left in names]


def calibrate_model(model: Any, val: Mapping[str, list[Any]], keys: Sequence[tuple], *, seed: int | None = None,
                    progress: Callable[[str, int, int], None] | None = None,
                    report: Callable[[str], None] | None = None) -> Calibration:
    """The calibration of ``model`` on validation records.

    Args:
        model: the trained `metavoxel.JointModel`.
        val: variable -> raw values of the N validation records (image paths or arrays; None for missing).
        keys: per record (subject, session, record) (`metavoxel.data.records.record_keys`): its predictions'
            seeds, as `predict` seeds them.
        seed: the run's seed (default: the model's).
        progress: ``progress(phase, done, total)``.
        report: one line per correction that could not be fitted (too few records), and so on.
    """
    from metavoxel.data.records import subject_seed
    from metavoxel.diffusion.options import PointOptions, SamplingOptions

    seed = model.spec.seed if seed is None else seed
    tick = progress or (lambda phase, done, total: None)
    say = report or (lambda line: None)
    n = len(next(iter(val.values())))
    by_given: dict[str, list[TypicalityTerms]] = {}  # given -> its records' terms, one block per set computed
    for names in given_sets(list(model.variables)):
        if not all(name in val for name in names):
            continue
        terms = typicality_terms(model, {name: val[name] for name in names}, seed=seed,
                                 progress=lambda d, t, g=names: tick(f"typicality {','.join(g)}", d, t))
        groups: dict[str, list[int]] = {}
        for i, given in enumerate(terms.given):
            if given:
                groups.setdefault(given, []).append(i)
        for given, rows in groups.items():
            by_given.setdefault(given, []).append(terms.rows(rows))
    if 0 < n < MIN_REFERENCE:
        say(f"note: {n} validation records are too few for typicality percentiles (it needs {MIN_REFERENCE}); "
            "typicality is n/a for this run")
    reference = TypicalityReference.from_terms({g: TypicalityTerms.concat(blocks) for g, blocks in by_given.items()},
                                               levels=TYPICALITY_LEVELS, seed=seed) if by_given else None
    bias: dict[str, dict[str, BiasCorrection]] = {}
    seeds = [subject_seed(seed, *k) for k in keys]
    for target, var in model.variables.items():
        if not isinstance(var.head, ScalarHead) or not linear_target(var) or target not in val:
            continue
        others = [g for g in model.variables if g != target and g in val]
        # records giving the target and every other variable: the correction is of the answer given all of them
        rows = [i for i in range(n) if _given(val[target][i]) and all(_given(val[g][i]) for g in others)]
        if len(rows) < 2:
            say(f"no bias correction of {target}: {len(rows)} validation record(s) give it and every other "
                "variable; it needs 2")
            continue
        fix = {g: [val[g][i] for i in rows] for g in others}
        truth = [float(val[target][i]) for i in rows]
        methods = {"sample": None}
        if model.diffusion.mixture.clean > 0:
            methods["point"] = None
        for method in methods:
            if method == "sample":
                result = model.sample(fix=fix, options=SamplingOptions(num_samples=BIAS_SAMPLES,
                                                                       seeds=[seeds[i] for i in rows]),
                                      progress=lambda d, t, n=target: tick(f"bias correction of {n}", d, t))
                predicted = result.samples[target].double().reshape(len(rows), -1).mean(dim=1)
                where = f"validation split, mean of {BIAS_SAMPLES} samples given {', '.join(fix)}"
            else:
                point = model.point_predict(fix, target, options=PointOptions(seeds=[seeds[i] for i in rows]))
                predicted = point.mean[target].double().reshape(-1)
                where = f"validation split, point prediction given {', '.join(fix)}"
            try:
                bias.setdefault(target, {})[method] = BiasCorrection.fit(predicted, truth, fitted_on=where)
            except InputError as exc:
                say(f"no {method} bias correction of {target}: {exc}")
    return Calibration(reference, bias, "", n)


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def write_calibration(run_dir: Path, calibration: Calibration, weights_sha256: str | None = None) -> Path:
    """calibration.json (atomically), sealed with ``weights_sha256`` (the digest of the weights it was computed
    with; default: the run's current weights), after its sidecar of image loss maps (calibration.safetensors, named
    in it with its SHA-256; removed when there are none)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    calibration.weights_sha256 = weights_sha256 or weights_digest(run_dir)
    maps = {} if calibration.typicality is None else calibration.typicality.maps
    digest = None
    if maps:
        tensors = {given: torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) for given, m in maps.items()}
        write_atomic(run_dir / MAPS_FILE, lambda tmp: save_file(tensors, tmp))
        digest = _digest(run_dir / MAPS_FILE)
    else:
        (run_dir / MAPS_FILE).unlink(missing_ok=True)
    return write_json(run_dir / CALIBRATION_FILE, calibration.to_dict(digest))


def calibrate_run(run_dir: str | Path, data: str | Path | None = None, *,
                  progress: Callable[[str, int, int], None] | None = None,
                  report: Callable[[str], None] | None = None) -> Path:
    """Compute and write a run's calibration.json from its validation split (module docstring).

    The run directory's writer lock (`metavoxel.io.lock`) is held throughout, so `train` cannot replace the weights
    meanwhile, and the calibration is sealed with the digest of the weights it read, whatever lies there when it
    is written.

    Args:
        data: the cohort the run was trained on (default: the one its train.json names).

    Raises:
        InputError: no cohort to read, a run without validation records in it; another metavoxel process writing
            the run (`FolderLocked`).
    """
    from metavoxel.io.lock import writer_lock
    from metavoxel.runs import SPEC_FILE, load_run

    run_dir = Path(run_dir)
    if not (run_dir / SPEC_FILE).is_file():
        load_run(run_dir)  # its one-line error, before the lock would create the folder
    for name in (CALIBRATION_FILE, MAPS_FILE):
        if (run_dir / name).is_dir():
            raise InputError(f"{run_dir / name} is a folder, where calibrate writes a file; move it out of the run")
    with writer_lock(run_dir, what=f"the run directory {str(run_dir)!r}"):
        digest = weights_digest(run_dir)  # before the weights are read: what the calibration is computed with
        return _calibrate_locked(run_dir, load_run(run_dir), digest, data, progress=progress, report=report)


def _calibrate_locked(run_dir: Path, model: Any, digest: str, data: str | Path | None, **kwargs: Any) -> Path:
    """`calibrate_run`'s work, under the run's lock, for ``model`` loaded from weights of SHA-256 ``digest``."""
    from metavoxel.data import DataSpec, load_splits, read_cohort

    if data is None:
        try:
            data = json.loads((run_dir / "train.json").read_text(encoding="utf-8")).get("data")
        except (OSError, json.JSONDecodeError, AttributeError):
            data = None
        if not data:
            raise InputError(f"{run_dir} does not record the cohort it was trained on; pass --data COHORT")
        if not Path(data).exists():
            raise InputError(f"the cohort {data!r} that {run_dir}/train.json names is not there; pass --data COHORT")
    if not (run_dir / "splits.json").is_file():
        raise InputError(f"{run_dir} has no splits.json, so its validation split is not known; calibration needs it "
                         "(`metavoxel train` on a cohort writes it; put back the run's own)")
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    splits = load_splits(run_dir / "splits.json", cohort)
    if not splits.get("val"):
        raise InputError(f"{run_dir}: the run's validation split has no records in {data}; calibration needs "
                         "them (train with a validation split, or pass the run's own cohort with --data)")
    return write_calibration(run_dir, calibrate_cohort(model, cohort, splits["val"], **kwargs), digest)


def calibrate_cohort(model: Any, cohort: Any, indices: list[int], **kwargs: Any) -> Calibration:
    """`calibrate_model` on the records ``indices`` of a cohort."""
    from metavoxel.data.records import record_keys

    chosen = cohort.select(indices)
    return calibrate_model(model, chosen.batch(), record_keys(chosen.records), **kwargs)


def load_calibration(run_dir: str | Path) -> Calibration | None:
    """The run's calibration, or None (with a `RunWarning` naming the fix) when it has none or a damaged or outdated
    one; a calibration.json of an earlier format gives its bias corrections and no typicality, with a `note`."""
    run_dir = Path(run_dir)
    path = run_dir / CALIBRATION_FILE
    if not path.is_file():
        return None
    damaged = (f"{path} is damaged; typicality and bias correction are off; run `metavoxel calibrate --model "
               f"{run_dir}` to write it again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format")
        if isinstance(version, int) and 1 <= version < FORMAT:
            calibration = Calibration(None, _bias(data), str(data.get("weights_sha256", "")), int(data.get("n", 0)))
            calibration.note = (f"note: {path} is from an earlier metavoxel (format {version}), so typicality is n/a; "
                                f"run `metavoxel calibrate --model {run_dir}` to compute it again")
        elif isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
            warnings.warn(f"{path} was written by a newer metavoxel (format {version}; this one reads up to "
                          f"{FORMAT}), so typicality and bias correction are off; upgrade metavoxel, or run "
                          f"`metavoxel calibrate --model {run_dir}` to write it again with this one", RunWarning,
                          stacklevel=2)
            return None
        elif version != FORMAT:
            raise ValueError
        else:
            calibration = Calibration.from_dict(data, _read_maps(run_dir, data))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        warnings.warn(damaged, RunWarning, stacklevel=2)
        return None
    if calibration.weights_sha256 != weights_digest(run_dir):
        warnings.warn(f"{path} was computed for other weights than {run_dir / WEIGHTS_FILE} (the model was "
                      f"trained further or replaced); typicality and bias correction are off; run `metavoxel "
                      f"calibrate --model {run_dir}` to update it", RunWarning, stacklevel=2)
        return None
    return calibration


def _read_maps(run_dir: Path, data: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The sidecar's maps named by calibration.json, checked against its SHA-256; ValueError if missing or other."""
    from safetensors.numpy import load_file

    named = (data.get("typicality") or {}).get("maps")
    if not named:
        return None
    sidecar = run_dir / str(named["file"])
    if sidecar.name != MAPS_FILE or not sidecar.is_file() or _digest(sidecar) != named["sha256"]:
        raise ValueError(f"{sidecar} is missing or not the one calibration.json names")
    return load_file(str(sidecar))
