"""Reading BIDS cohorts: participants.tsv, sessions.tsv overrides, BIDS spellings, metadata-only subjects."""

from __future__ import annotations

import pytest

import metavoxel as mv
from metavoxel.data import CohortError, DataSpec, read_bids
from metavoxel.data.bids import bids_sex_codes

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")


def test_bids_without_sessions(tmp_path, write_nifti, write_text, plain_sex_variables):
    write_text(tmp_path / "participants.tsv", [
        ["participant_id", "age", "sex", "handedness"],
        ["sub-01", "70", "male", "R"],
        ["02", "89+", "Female", "L"],
        ["sub-03", "n/a", "f", "n/a"],
        ["04", "50", "M", "R"],
    ])
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_nifti(tmp_path / "sub-02" / "anat" / "sub-02_T1w.nii")
    (tmp_path / "sub-02" / "anat" / "sub-02_T1w.json").write_text("{}")  # sidecars are not images
    write_nifti(tmp_path / "sub-04" / "anat" / "sub-04_T2w.nii.gz")  # not the suffix asked for
    cohort = read_bids(tmp_path, plain_sex_variables)
    assert cohort.variables == ("image", "age", "sex")
    assert [(r.subject, r.session, r.source) for r in cohort] == [
        ("sub-01", None, "sub-01/anat/sub-01_T1w.nii.gz"),
        ("sub-02", None, "sub-02/anat/sub-02_T1w.nii"),
        ("sub-03", None, "participants.tsv row 4"),  # no folder: a metadata-only record
        ("sub-04", None, "participants.tsv row 5"),  # no T1w file: a metadata-only record
    ]
    assert cohort.batch() == {
        "image": [str(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz"),
                  str(tmp_path / "sub-02" / "anat" / "sub-02_T1w.nii"), None, None],
        "age": [70.0, 89.0, None, 50.0],  # "89+" reads as 89
        "sex": ["M", "F", "F", "M"],
    }


def test_bids_suffix_picks_other_images(tmp_path, write_nifti, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "70"]])
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz")
    cohort = read_bids(tmp_path, cohort_variables, DataSpec(bids_suffix="FLAIR"))
    assert [r.source for r in cohort] == ["sub-01/anat/sub-01_FLAIR.nii.gz"]


def test_bids_with_sessions(tmp_path, write_nifti, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [
        ["participant_id", "age", "sex"], ["01", "60", "M"], ["sub-02", "70", "F"]])
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [
        ["session_id", "age"], ["1", "61.5"], ["ses-2", "63"], ["ses-3", "n/a"], ["ses-4", "66"]])
    for ses in ("ses-1", "ses-2", "ses-3"):
        write_nifti(tmp_path / "sub-01" / ses / "anat" / f"sub-01_{ses}_T1w.nii.gz")
    write_nifti(tmp_path / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_run-2_T1w.nii.gz")
    write_nifti(tmp_path / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz")
    (tmp_path / "sub-02" / "ses-b" / "func").mkdir(parents=True)  # a session without a T1w
    cohort = read_bids(tmp_path, cohort_variables)
    rows = [(r.subject, r.session, r.source, r.values["age"], r.values["sex"], r.values["image"] is not None)
            for r in cohort]
    assert rows == [
        ("sub-01", "ses-1", "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", 61.5, "M", True),  # sessions.tsv wins
        ("sub-01", "ses-2", "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", 63.0, "M", True),
        ("sub-01", "ses-2", "sub-01/ses-2/anat/sub-01_ses-2_run-2_T1w.nii.gz", 63.0, "M", True),  # two runs
        ("sub-01", "ses-3", "sub-01/ses-3/anat/sub-01_ses-3_T1w.nii.gz", None, "M", True),  # n/a there wins too
        ("sub-01", "ses-4", "sub-01/sub-01_sessions.tsv row 5", 66.0, "M", False),  # listed, no image
        ("sub-02", "ses-a", "sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz", 70.0, "F", True),
        ("sub-02", "ses-b", "sub-02/ses-b/", 70.0, "F", False),  # no sessions.tsv: participants.tsv holds
    ]
    assert cohort.subjects() == ["sub-01", "sub-02"]
    assert cohort.summary() == (f"{tmp_path}: 7 records of 2 subjects, 5 with an image, 2 without (metadata only: "
                                "sub-01/sub-01_sessions.tsv row 5, sub-02/ses-b/)")


def test_every_bids_problem_is_reported_at_once(tmp_path, write_nifti, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [
        ["participant_id", "age", "sex"],
        ["sub-01", "abc", "M"],   # bad age shared by two sessions: reported once
        ["01", "60", "M"],        # the same subject as sub-01
        ["sub-02", "120", "X"],
    ])
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [["session", "weight"], ["ses-1", "70"]])
    write_nifti(tmp_path / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz")
    write_nifti(tmp_path / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz")
    write_nifti(tmp_path / "sub-02" / "anat" / "sub-02_T1w.nii.gz", shape=(8, 8))
    write_nifti(tmp_path / "sub-09" / "anat" / "sub-09_T1w.nii.gz")
    write_text(tmp_path / "sub-03" / "sub-03_sessions.tsv", [["session_id", "age"], ["1", "50"], ["ses-1", "51"]])
    with pytest.raises(mv.InputError) as err:
        read_bids(tmp_path, cohort_variables)
    lines = str(err.value).splitlines()
    assert lines[0] == (f"{tmp_path}: 8 problems in 3 rows, 1 file, sub-03/, sub-09/ and "
                        "sub-01/sub-01_sessions.tsv header; fix them and run again:")
    expected = [
        "  participants.tsv row 3, column 'participant_id': duplicate subject sub-01 (also row 2); participants.tsv "
        "holds one row per subject: put values that change between sessions in sub-01/sub-01_sessions.tsv",
        "  sub-03/: has a folder but no row in participants.tsv",
        "  sub-09/: has a folder but no row in participants.tsv",
        "  sub-01/sub-01_sessions.tsv header: the column 'session_id' is missing",
        "  participants.tsv row 2, column 'age': age: expected a number",
        "  sub-02/anat/sub-02_T1w.nii.gz: image: ",
        "  participants.tsv row 4, column 'age': age: '120' is outside the declared range [40, 95]",
        "  participants.tsv row 4, column 'sex': sex: unknown category 'X'",
    ]
    assert len(lines) == 1 + len(expected)
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(start), line
    assert "has 2 dimensions (8, 8)" in lines[6]


def test_duplicate_sessions_are_reported(tmp_path, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"]])
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [["session_id", "age"], ["1", "50"], ["ses-1", "51"]])
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert [p.line() for p in err.value.problems] == [
        "  sub-01/sub-01_sessions.tsv row 3, column 'session_id': duplicate session ses-1 (also row 2); "
        "keep one row per session"]


def test_bids_needs_participants_and_its_id_column(tmp_path, write_text, cohort_variables):
    with pytest.raises(mv.InputError, match="has no participants.tsv"):
        read_bids(tmp_path, cohort_variables)
    with pytest.raises(mv.InputError, match="is not a folder"):
        read_bids(tmp_path / "nothing", cohort_variables)
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"]])
    with pytest.raises(CohortError, match="participants.tsv: lists no subjects"):
        read_bids(tmp_path, cohort_variables)
    write_text(tmp_path / "participants.tsv", [["subject", "age"], ["sub-01", "60"]])
    with pytest.raises(CohortError, match="participants.tsv header: the subject column 'participant_id' is missing"):
        read_bids(tmp_path, cohort_variables)
    assert read_bids(tmp_path, cohort_variables, DataSpec(subject_column="subject"))[0].subject == "sub-01"


def test_bids_codes_override_the_bids_sex_spellings(tmp_path, write_text, plain_sex_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "sex"], ["1", "MALE"], ["2", "0"], ["3", "m"]])
    cohort = read_bids(tmp_path, plain_sex_variables, DataSpec(codes={"sex": {"0": "F", "m": "F"}}))
    assert cohort.batch()["sex"] == ["M", "F", "F"]


def test_bids_sex_codes_follow_the_variable_spelling(plain_sex_variables):
    assert bids_sex_codes(plain_sex_variables["sex"]) == {"M": "M", "m": "M", "male": "M", "F": "F", "f": "F",
                                                          "female": "F"}
    assert bids_sex_codes(plain_sex_variables["age"]) == {}


def test_runs_of_one_session_get_their_own_seeds_and_a_lone_record_keeps_its_seed(tmp_path, write_nifti, write_text,
                                                                                   cohort_variables):
    from metavoxel.data.records import record_keys, subject_seed

    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"], ["sub-02", "70"]])
    for run in ("run-1", "run-2"):
        write_nifti(tmp_path / "sub-01" / "ses-1" / "anat" / f"sub-01_ses-1_{run}_T1w.nii.gz")
    write_nifti(tmp_path / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-1_T1w.nii.gz")
    cohort = read_bids(tmp_path, cohort_variables)
    keys = record_keys(cohort.records)
    assert keys == [("sub-01", "ses-1", "sub-01/ses-1/anat/sub-01_ses-1_run-1_T1w.nii.gz"),
                    ("sub-01", "ses-1", "sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz"),
                    ("sub-02", "ses-1", None)]
    seeds = [subject_seed(0, *key) for key in keys]
    assert seeds[0] != seeds[1]  # two runs no longer draw the same noise
    assert seeds[2] == subject_seed(0, "sub-02", "ses-1")  # alone in its session: the seed it always had
    import hashlib

    legacy = int.from_bytes(hashlib.sha256(b"0\0sub-02\0ses-1").digest()[:8], "big") >> 1
    assert seeds[2] == legacy
