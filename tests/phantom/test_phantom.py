"""The synthetic cohort: determinism, monotone age and sex effects, BIDS output metavoxel reads, template, errors.

Effects are checked on paired subjects: the same (seed, index) with only age (or sex) changed keeps every
other draw, so averages over a handful of subjects show the effect with all nuisance switched on.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from metavoxel.cli import run
from metavoxel.errors import InputError
from metavoxel.phantom import PhantomConfig, phantom_subject, tissue_volumes, write_phantom

PAIRS = range(8)  # subjects averaged over in the effect tests


def _config(**values) -> PhantomConfig:
    return PhantomConfig(**{"subjects": 8, "size": 32, **values})


def _at_age(age: float, **values) -> PhantomConfig:
    return _config(age_mean=age, age_sd=0.0, **values)


def _central_csf_ml(image: np.ndarray, affine: np.ndarray, below: float = 0.45) -> float:
    """mL of dark brain voxels in a central box around the lateral ventricles, from the image alone."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in image.shape], indexing="ij"), -1)
    x, y, z = np.moveaxis(ijk @ affine[:3, :3].T + affine[:3, 3], -1, 0)
    box = (np.abs(x) < 25) & (y > -40) & (y < 30) & (z > -10) & (z < 26)
    dark = (image > 0) & (image < below) & box
    return float(dark.sum()) * abs(np.linalg.det(affine[:3, :3])) / 1000.0


def _contrast(subject) -> float:
    """(WM - GM) / WM from the image by least squares on the true tissue fractions of the pure-brain voxels."""
    t = subject.tissues
    inside = t["brain"] > 0.99
    design = np.stack([t[k][inside] for k in ("csf", "gm", "deep_gm", "wm")], axis=1)
    levels = np.linalg.lstsq(design, subject.image[inside], rcond=None)[0]
    return float((levels[3] - levels[1]) / levels[3])


def _data_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): np.asarray(nib.load(p).dataobj).tobytes()
            for p in sorted(root.glob("sub-*/anat/*_T1w.nii.gz"))}


def test_same_config_same_bytes_other_seed_differs_and_subject_k_ignores_cohort_size(tmp_path):
    a = write_phantom(tmp_path / "a", _config(subjects=3))
    b = write_phantom(tmp_path / "b", _config(subjects=3))
    assert _data_bytes(a) == _data_bytes(b) and len(_data_bytes(a)) == 3
    assert (a / "participants.tsv").read_bytes() == (b / "participants.tsv").read_bytes()
    file = "sub-0002/anat/sub-0002_T1w.nii.gz"
    assert (a / file).read_bytes() == (b / file).read_bytes()  # the whole file, header and gzip stream too
    other = write_phantom(tmp_path / "c", _config(subjects=3, seed=1))
    assert all(_data_bytes(other)[k] != v for k, v in _data_bytes(a).items())
    assert (other / "participants.tsv").read_text() != (a / "participants.tsv").read_text()
    five = write_phantom(tmp_path / "d", _config(subjects=5))
    assert {k: _data_bytes(five)[k] for k in _data_bytes(a)} == _data_bytes(a)
    assert (five / "participants.tsv").read_text().splitlines()[:4] == (a / "participants.tsv").read_text().splitlines()
    assert not list(tmp_path.glob(".*"))  # no staging folders left behind


def test_ventricles_grow_with_age_and_not_without_the_age_effect():
    means = {}
    for effect in (1.0, 0.0):
        for age in (45.0, 67.5, 90.0):
            volumes = [_central_csf_ml(s.image, s.affine) for s in
                       (phantom_subject(_at_age(age, age_effect=effect), k) for k in PAIRS)]
            means[effect, age] = float(np.mean(volumes))
    assert means[1.0, 45.0] < means[1.0, 67.5] < means[1.0, 90.0]
    assert means[1.0, 90.0] > 2 * means[1.0, 45.0]
    assert abs(means[0.0, 90.0] - means[0.0, 45.0]) < 0.05 * (means[1.0, 90.0] - means[1.0, 45.0])
    truth = [phantom_subject(_at_age(age), 0, tissues=True) for age in (45.0, 90.0)]
    assert tissue_volumes(truth[1])["ventricles"] > 2 * tissue_volumes(truth[0])["ventricles"]
    assert truth[1].truth["sulcal_width_mm"] > truth[0].truth["sulcal_width_mm"]
    assert truth[1].truth["cortical_thickness_mm"] < truth[0].truth["cortical_thickness_mm"]


def test_grey_white_contrast_falls_with_age():
    contrast = {age: np.mean([_contrast(phantom_subject(_at_age(age), k, tissues=True)) for k in range(6)])
                for age in (40.0, 67.5, 95.0)}
    assert contrast[40.0] > contrast[67.5] > contrast[95.0]
    assert contrast[40.0] == pytest.approx(0.40, abs=0.05) and contrast[95.0] == pytest.approx(0.25, abs=0.05)


def _mask_stats(image: np.ndarray, affine: np.ndarray) -> tuple[float, float]:
    """(brain mL, AP/LR ratio of the mask's second moments)."""
    ijk = np.argwhere(image > 0)
    xyz = ijk @ affine[:3, :3].T
    sd = xyz.std(axis=0)
    return len(ijk) * abs(np.linalg.det(affine[:3, :3])) / 1000.0, float(sd[1] / sd[0])


def test_males_have_larger_and_longer_brains_and_not_without_the_sex_effect():
    stats = {}
    for effect in (1.0, 0.0):
        for sex, fraction in (("F", 1.0), ("M", 0.0)):
            subjects = [phantom_subject(_config(female_fraction=fraction, sex_effect=effect), k) for k in PAIRS]
            assert {s.sex for s in subjects} == {sex}
            stats[effect, sex] = np.mean([_mask_stats(s.image, s.affine) for s in subjects], axis=0)
    ratio = stats[1.0, "M"][0] / stats[1.0, "F"][0]
    assert 1.10 < ratio < 1.28  # 1.06³ ≈ 1.19 in volume
    assert stats[1.0, "M"][1] > stats[1.0, "F"][1] * 1.02  # AP/LR 4 % larger in males
    assert stats[0.0, "M"] == pytest.approx(stats[0.0, "F"], rel=1e-9)


def test_bids_output_reads_as_a_metavoxel_cohort_with_ras_geometry(tmp_path):
    import metavoxel as mv
    from metavoxel.data import read_cohort

    root = write_phantom(tmp_path / "phantom", _config(subjects=4))
    spec = {
        "variables": [
            {"name": "image", "kind": "image", "shape": [32, 32, 32],
             "preprocess": {"spacing": [5.5, 5.5, 5.5], "percentiles": None, "center": "world_origin"}},
            {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
            {"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
        ],
        "diffusion": {"timesteps": 50, "sampling_steps": 5},
        "network": {"spatial_dims": 3, "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1,
                    "num_head_channels": 8, "norm_num_groups": 4, "cross_attention_dim": 16},
    }
    variables = mv.JointModel(spec).variables
    cohort = read_cohort(root, variables)
    batch = cohort.batch()
    rows = [line.split("\t") for line in (root / "participants.tsv").read_text().splitlines()]
    assert rows[0] == ["participant_id", "age", "sex"]
    assert [r[0] for r in rows[1:]] == ["sub-0001", "sub-0002", "sub-0003", "sub-0004"]
    assert batch["age"] == [float(r[1]) for r in rows[1:]] and batch["sex"] == [r[2] for r in rows[1:]]
    image = nib.load(batch["image"][0])
    assert image.get_data_dtype() == np.float32 and image.shape == (32, 32, 32)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S") and int(image.header["sform_code"]) > 0
    assert int(image.header["qform_code"]) > 0 and np.allclose(image.header.get_qform(), image.affine)
    np.testing.assert_allclose(np.diag(image.affine)[:3], [5.5, 5.5, 5.5])
    np.testing.assert_allclose(image.affine @ [16, 16, 16, 1], [0, 0, 0, 1])
    prepared = variables["image"].parse(batch["image"][0])  # on the model grid without interpolation
    np.testing.assert_allclose(prepared[0].numpy(), np.asarray(image.dataobj), atol=1e-6)
    description = (root / "dataset_description.json").read_text()
    assert '"BIDSVersion"' in description and mv.__version__ in description
    truth = json.loads((root / "phantom.json").read_text())
    assert truth["config"]["subjects"] == 4 and truth["config"]["size"] == [32, 32, 32]
    assert [s["participant_id"] for s in truth["subjects"]] == [r[0] for r in rows[1:]]
    assert [s["age"] for s in truth["subjects"]] == batch["age"]
    assert set(json.loads((root / "participants.json").read_text())) == {"participant_id", "age", "sex"}


def test_non_cubic_grid_keeps_the_brain_centred():
    subject = phantom_subject(_config(size=(32, 40, 36), variability=0.0), 0)
    assert subject.image.shape == (32, 40, 36)
    np.testing.assert_allclose(np.diag(subject.affine)[:3], [176 / 32, 176 / 40, 176 / 36])
    ijk = np.argwhere(subject.image > 0)
    centroid = ijk.mean(axis=0) @ subject.affine[:3, :3].T + subject.affine[:3, 3]
    assert np.abs(centroid).max() < 6.0  # mm; the egg shape puts the centroid a little above the centre


def _template(path: Path) -> Path:
    """An LPS ellipsoid brain at 2.5 mm: WM 400, a GM rim 240, two CSF ventricles 80, a GM marker front-right."""
    shape, v = (64, 76, 60), 2.5
    affine = np.diag([-v, -v, v, 1.0])
    centre = np.array([10.0, -20.0, 5.0])  # anywhere in the file's world: the phantom centres the brain
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3] - centre
    r = np.sqrt(((xyz / [62.0, 76.0, 54.0]) ** 2).sum(-1))
    data = np.where(r < 1, 240.0, 0.0)
    data[r < 0.9] = 400.0
    mirrored = np.concatenate([np.abs(xyz[..., :1]), xyz[..., 1:]], axis=-1)
    data[(np.sqrt((((mirrored - [9, 0, 8]) / [7, 22, 9]) ** 2).sum(-1)) < 1)] = 80.0
    data[np.sqrt((((xyz - [30, 40, 0]) / 8.0) ** 2).sum(-1)) < 1] = 240.0  # right-anterior marker
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def test_template_anatomy_follows_age_and_keeps_orientation(tmp_path):
    path = _template(tmp_path / "template.nii.gz")
    young = [phantom_subject(_at_age(40.0, template=path, size=40), k) for k in range(4)]
    old = [phantom_subject(_at_age(95.0, template=path, size=40), k) for k in range(4)]
    assert young[0].truth["template_wm_raw"] == pytest.approx(400.0, rel=0.03)
    assert young[0].truth["template_gm_level"] == pytest.approx(0.6, abs=0.05)
    np.testing.assert_allclose(young[0].truth["ventricle_centre_mm"], [0, 0, 8], atol=1.5)
    # below g/2 = 0.3 the contrast map is the identity, so this counts ventricle voxels only
    volumes = [np.mean([_central_csf_ml(s.image, s.affine, below=0.3) for s in group]) for group in (young, old)]
    assert volumes[1] > 1.5 * volumes[0] > 0
    assert old[0].truth["gm_intensity"] > young[0].truth["gm_intensity"]
    quiet = phantom_subject(_at_age(40.0, template=path, variability=0.0, noise=0.0), 0)
    ijk = np.argwhere(quiet.image > 0)
    xyz = ijk @ quiet.affine[:3, :3].T + quiet.affine[:3, 3]
    assert np.abs(xyz.mean(axis=0)).max() < 4.0  # the template's brain is centred whatever its own world

    def at(x: float, y: float, z: float) -> float:
        i, j, k = np.round(np.linalg.solve(quiet.affine, [x, y, z, 1.0])[:3]).astype(int)
        return float(quiet.image[i, j, k])

    assert at(30, 40, 0) < 0.75 and min(at(-30, 40, 0), at(30, -40, 0), at(-30, -40, 0)) > 0.9  # right-anterior
    with pytest.raises(InputError, match="does not exist"):
        phantom_subject(_config(template=tmp_path / "missing.nii.gz"), 0)


def test_existing_output_is_refused_and_overwrite_replaces_only_a_phantom(tmp_path):
    out = write_phantom(tmp_path / "ds", _config(subjects=2))
    with pytest.raises(InputError, match="exists and is not empty"):
        write_phantom(out, _config(subjects=1))
    write_phantom(out, _config(subjects=1), overwrite=True)
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-0001"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a phantom dataset"):
        write_phantom(other, _config(subjects=1), overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    calls = []
    write_phantom(tmp_path / "empty", _config(subjects=2), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]


def test_config_validation_is_one_line_input_errors():
    for bad in ({"size": 8}, {"size": (32, 32)}, {"female_fraction": 1.5}, {"age_mean": 30.0},
                {"age_range": (90.0, 50.0)}, {"colour": "blue"}, {"noise": -0.1}):
        with pytest.raises(InputError) as info:
            PhantomConfig.build(**bad)
        assert "\n" not in str(info.value)
    assert PhantomConfig.build(size=48).size == (48, 48, 48)
    with pytest.raises(InputError, match="subject index"):
        phantom_subject(_config(subjects=2), 2)


def test_cli_writes_a_cohort_and_bad_input_exits_2_writing_nothing(tmp_path, capsys):
    assert run(["phantom", str(tmp_path / "cli"), "--subjects", "3", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "3 subjects, age" in out and "female" in out and str(tmp_path / "cli") in out.replace("\n", "")
    assert len(list((tmp_path / "cli").glob("sub-*/anat/sub-*_T1w.nii.gz"))) == 3
    assert run(["phantom", str(tmp_path / "bad"), "--size", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "size" in err and len(err.splitlines()) == 1
    assert run(["phantom", str(tmp_path / "cli"), "--subjects", "2"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]


def test_a_counterfactual_renders_the_same_subject_at_other_values():
    config = _config(subjects=4)
    for k in range(3):
        factual = phantom_subject(config, k)
        own = phantom_subject(config, k, counterfactual={"age": factual.age})
        assert np.array_equal(own.image, factual.image)  # its own values: the same bytes
        older = phantom_subject(config, k, counterfactual={"age": "+10"})
        assert older.age == pytest.approx(factual.age + 10) and older.sex == factual.sex
        assert older.truth["factual"] == {"age": factual.age, "sex": factual.sex}
        assert older.truth["ventricle_scale"] > factual.truth["ventricle_scale"]
        assert older.truth["rotation_deg"] == factual.truth["rotation_deg"]  # the same nuisance draws
        other = "M" if factual.sex == "F" else "F"
        swapped = phantom_subject(config, k, counterfactual={"sex": other})
        assert swapped.sex == other and swapped.age == factual.age
        assert (swapped.truth["sex_scale"] > factual.truth["sex_scale"]) == (other == "M")
    still = _config(subjects=2, age_effect=0.0)  # no age effect: another age changes nothing in the image
    assert np.array_equal(phantom_subject(still, 1, counterfactual={"age": "-20"}).image,
                          phantom_subject(still, 1).image)
    for bad in ({"weight": 3}, {"age": "old"}, {"age": "+200"}, {"sex": "X"}):
        with pytest.raises(InputError) as info:
            phantom_subject(config, 0, counterfactual=bad)
        assert "\n" not in str(info.value)


def test_cli_counterfactual_writes_the_cohort_at_other_values(tmp_path, capsys):
    assert run(["phantom", str(tmp_path / "now"), "--subjects", "3"]) == 0
    assert run(["phantom", str(tmp_path / "later"), "--subjects", "3", "--counterfactual", "age=+10"]) == 0
    rows = {name: [line.split("\t") for line in (tmp_path / name / "participants.tsv").read_text().splitlines()[1:]]
            for name in ("now", "later")}
    assert [float(r[1]) for r in rows["later"]] == pytest.approx([float(r[1]) + 10 for r in rows["now"]])
    record = json.loads((tmp_path / "later" / "phantom.json").read_text())
    assert record["counterfactual"] == {"age": "+10"}
    assert record["subjects"][0]["factual"]["age"] == float(rows["now"][0][1])
    capsys.readouterr()
    assert run(["phantom", str(tmp_path / "bad"), "--subjects", "2", "--counterfactual", "weight=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "age and/or sex" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()

