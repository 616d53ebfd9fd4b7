"""Table and folders disagreeing about who or when: reported from both sides, never paired by guess."""

from __future__ import annotations

import pytest

from metavoxel.data import CohortError, CohortWarning, DataSpec, read_bids, read_table

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")

AGES = {(f"sub-{s:02d}", f"ses-{v:02d}"): 50.0 + s + 0.5 * v for s in range(1, 9) for v in (1, 2)}


def _sessions_tree(root, write_nifti, subjects=range(1, 9)):
    for s in subjects:
        for v in (1, 2):
            sub, ses = f"sub-{s:02d}", f"ses-{v:02d}"
            write_nifti(root / sub / ses / "anat" / f"{sub}_{ses}_T1w.nii.gz")


def _ages(cohort):
    return {(r.subject, r.session): r.values["age"] for r in cohort}


def test_participants_with_a_session_column_gives_each_session_its_own_values(tmp_path, write_nifti, write_text,
                                                                              cohort_variables):
    # the cohort: one participants.tsv row per session, as many people keep them
    _sessions_tree(tmp_path, write_nifti)
    rows = [["participant_id", "session", "age", "sex"]]
    rows += [[sub, ses, f"{age:g}", "F"] for (sub, ses), age in AGES.items()]
    write_text(tmp_path / "participants.tsv", rows)
    cohort = read_bids(tmp_path, cohort_variables)
    assert len(cohort) == 16
    assert _ages(cohort) == AGES
    assert all(r.values["image"].endswith(f"{r.subject}_{r.session}_T1w.nii.gz") for r in cohort)


def test_duplicate_subject_rows_are_refused_and_the_advice_gives_the_right_ages(tmp_path, write_nifti, write_text,
                                                                                cohort_variables):
    _sessions_tree(tmp_path, write_nifti, subjects=(1, 2))
    ages = {k: v for k, v in AGES.items() if k[0] in ("sub-01", "sub-02")}
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"]] + [[s, f"{a:g}"] for (s, _), a in
                                                                            ages.items()])
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    message = str(err.value)
    assert "remove the duplicate row" not in message  # following that advice gave session 2 session 1's age
    assert ("participants.tsv row 3, column 'participant_id': duplicate subject sub-01 (also row 2); "
            "participants.tsv holds one row per subject: put values that change between sessions in "
            "sub-01/sub-01_sessions.tsv (column session_id, then age, ...), or add a session_id column here naming "
            "each row's session") in message
    # advice 1: the per-session values in sessions.tsv (participants.tsv keeps one row per subject)
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "51.5"], ["sub-02", "52.5"]])
    for sub in ("sub-01", "sub-02"):
        write_text(tmp_path / sub / f"{sub}_sessions.tsv",
                   [["session_id", "age"]] + [[ses, f"{a:g}"] for (s, ses), a in ages.items() if s == sub])
    assert _ages(read_bids(tmp_path, cohort_variables)) == ages
    # advice 2: a session_id column in participants.tsv
    for sub in ("sub-01", "sub-02"):
        (tmp_path / sub / f"{sub}_sessions.tsv").unlink()
    write_text(tmp_path / "participants.tsv", [["participant_id", "session_id", "age"]] +
               [[s, ses, f"{a:g}"] for (s, ses), a in ages.items()])
    assert _ages(read_bids(tmp_path, cohort_variables)) == ages


def test_a_session_without_its_own_row_is_a_problem_not_another_rows_values(tmp_path, write_nifti, write_text,
                                                                             cohort_variables):
    _sessions_tree(tmp_path, write_nifti, subjects=(1, 2))
    write_text(tmp_path / "participants.tsv", [["participant_id", "session_id", "age"], ["sub-01", "ses-01", "51"],
                                               ["sub-01", "ses-02", "52"], ["sub-02", "ses-01", "61"]])
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [["session_id", "age"], ["ses-01", "51"]])
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert [p.line() for p in err.value.problems] == [
        "  sub-02/ses-02/: session ses-02 has a folder but no row in participants.tsv (its rows for sub-02 name "
        "ses-01); add a row for ses-02 (n/a for unknown values); values are never borrowed from another row"]
    # sub-01 ses-02 is fine: sessions.tsv lacks it, but its participants.tsv row holds its values


def test_sessions_tsv_leaving_out_a_session_is_a_problem(tmp_path, write_nifti, write_text, cohort_variables):
    _sessions_tree(tmp_path, write_nifti, subjects=(1,))
    write_text(tmp_path / "participants.tsv", [["participant_id", "age", "sex"], ["sub-01", "51", "F"]])
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [["session_id", "age"], ["ses-01", "51"]])
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert [p.line() for p in err.value.problems] == [
        "  sub-01/ses-02/: session ses-02 has a folder but no row in sub-01/sub-01_sessions.tsv (it lists ses-01); "
        "add a row for ses-02 (n/a for unknown values); values are never borrowed from another row"]
    # a sessions.tsv without any variable's column (acquisition times only) holds no values to miss
    write_text(tmp_path / "sub-01" / "sub-01_sessions.tsv", [["session_id", "acq_time"], ["ses-01", "2020-01-01"]])
    assert _ages(read_bids(tmp_path, cohort_variables)) == {("sub-01", "ses-01"): 51.0, ("sub-01", "ses-02"): 51.0}


def test_table_and_folders_disagreeing_are_reported_from_both_sides_in_one_message(tmp_path, write_nifti, write_text,
                                                                                   cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"], ["sub-9", "70"],
                                               ["sub-02", "65"]])
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_nifti(tmp_path / "sub-09" / "anat" / "sub-09_T1w.nii.gz")  # the folder of the row spelled sub-9
    write_nifti(tmp_path / "sub-02" / "anat" / "sub-01_T1w.nii.gz")  # copied from sub-01, not renamed
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert str(err.value).splitlines()[1:] == [
        "  sub-09/: has a folder but no row in participants.tsv; add a row (n/a for unknown values) or remove the "
        "folder",
        "  sub-02/anat/sub-01_T1w.nii.gz: the file name says sub-01 but the file is in sub-02/anat/; rename it to "
        "start with 'sub-02_' or move it to the folder of the subject and session it holds",
        "  also: 1 record has no image and is kept to train the metadata only: participants.tsv row 3",
    ]


def test_rows_without_an_image_are_warned_about_and_counted(tmp_path, write_nifti, write_text, cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"], ["sub-02", "65"]])
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    with pytest.warns(CohortWarning, match="1 record has no image and is kept to train the metadata only: "
                      "participants.tsv row 3"):
        cohort = read_bids(tmp_path, cohort_variables)
    assert cohort.summary() == (f"{tmp_path}: 2 records of 2 subjects, 1 with an image, 1 without (metadata only: "
                                "participants.tsv row 3)")
    write_nifti(tmp_path / "scan.nii.gz")
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "image", "age"], ["1", "scan.nii.gz", "60"],
                                                 ["2", "n/a", "61"], ["3", "", "62"]])
    with pytest.warns(CohortWarning, match="2 records have no image .*: cohort.tsv row 3, cohort.tsv row 4"):
        cohort = read_table(table, cohort_variables)
    assert cohort.images == ("image",)
    assert cohort.summary().endswith(": 3 records of 3 subjects, 1 with an image, 2 without (metadata only: "
                                     "cohort.tsv row 3, cohort.tsv row 4)")


def test_a_repeated_subject_column_is_reported_once_without_its_consequences(tmp_path, write_nifti, write_text,
                                                                            cohort_variables):
    write_text(tmp_path / "participants.tsv", [["participant_id", "age", "participant_id"]] +
               [[f"sub-{i:02d}", "60", str(i)] for i in range(1, 11)])
    for i in range(1, 11):
        write_nifti(tmp_path / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz")
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert [p.line() for p in err.value.problems] == [
        "  participants.tsv header: column name(s) 'participant_id' appear more than once; rename them so each "
        "column is unique"]
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "age", "participant_id"], ["1", "abc", "2"]])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables)
    assert len(err.value.problems) == 1


def test_missing_session_cells_mean_no_session(tmp_path, write_nifti, write_text, cohort_variables):
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_text(tmp_path / "participants.tsv", [["participant_id", "session", "age"], ["sub-01", "n/a", "60"]])
    assert [(r.session, r.values["age"]) for r in read_bids(tmp_path, cohort_variables)] == [(None, 60.0)]
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "ses", "age"], ["1", "n/a", "60"],
                                                 ["1", "", "61"], ["2", "2", "62"]])
    with pytest.raises(CohortError, match="duplicate subject sub-1 \\(also row 2\\); give each row its session in "
                       "column 'ses', or keep one row"):
        read_table(table, cohort_variables, DataSpec(session_column="ses"))
    table = write_text(tmp_path / "cohort.tsv", [["participant_id", "ses", "age"], ["1", "n/a", "60"],
                                                 ["2", "2", "62"]])
    assert [r.session for r in read_table(table, cohort_variables, DataSpec(session_column="ses"))] == [None, "ses-2"]


def test_a_scan_outside_any_session_of_a_subject_with_only_session_rows_is_a_problem(tmp_path, write_nifti,
                                                                                      write_text, cohort_variables):
    write_nifti(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    write_text(tmp_path / "participants.tsv", [["participant_id", "session_id", "age"], ["sub-01", "ses-01", "60"],
                                               ["sub-01", "ses-02", "62"]])
    with pytest.raises(CohortError) as err:
        read_bids(tmp_path, cohort_variables)
    assert str(err.value).splitlines()[1:] == [
        "  sub-01/anat/sub-01_T1w.nii.gz: a scan outside any ses-* folder, but participants.tsv has only per-session "
        "rows for sub-01 (sessions ses-01, ses-02); move the scan into its session's folder, or add a row for sub-01 "
        "with an empty session",
        "  also: 2 records have no image and are kept to train the metadata only: participants.tsv row 2, "
        "participants.tsv row 3",
    ]
