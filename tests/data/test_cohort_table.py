"""Reading cohort tables (TSV/CSV): values, renaming, codes, missing cells, and every problem at once."""

from __future__ import annotations

import math

import pytest
import torch

import metavoxel as mv
from metavoxel.data import CohortError, CohortWarning, DataSpec, read_cohort, read_table

pytestmark = pytest.mark.filterwarnings("ignore::metavoxel.data.CohortWarning")  # tests that check them use warns


@pytest.fixture
def scans(tmp_path, write_nifti):
    """A cohort folder with scans/ok.nii.gz, a 2D file, a 4D file and a corrupt file."""
    write_nifti(tmp_path / "scans" / "ok.nii.gz")
    write_nifti(tmp_path / "scans" / "ok2.nii")
    write_nifti(tmp_path / "scans" / "flat.nii.gz", shape=(8, 8))
    write_nifti(tmp_path / "scans" / "two_channels.nii.gz", shape=(8, 8, 8, 2))
    write_nifti(tmp_path / "scans" / "one_channel.nii.gz", shape=(8, 8, 8, 1))
    (tmp_path / "scans" / "corrupt.nii.gz").write_bytes(b"not a nifti file at all")
    (tmp_path / "scans" / "notes.txt").write_text("hello")
    return tmp_path


def test_tsv_reads_values_and_resolves_image_paths_relative_to_the_table(scans, write_text, cohort_variables):
    table = write_text(scans / "cohort.tsv", [
        ["participant_id", "image", "age", "sex"],
        ["sub-01", "scans/ok.nii.gz", "70.5", "F"],
        ["02", "scans/ok2.nii", "61", "male"],
        ["sub-03", str(scans / "scans" / "one_channel.nii.gz"), "89+", "m"],
    ])
    cohort = read_table(table, cohort_variables)
    assert len(cohort) == 3
    assert cohort.variables == ("image", "age", "sex")
    assert [r.subject for r in cohort] == ["sub-01", "sub-02", "sub-03"]
    assert [r.source for r in cohort] == ["cohort.tsv row 2", "cohort.tsv row 3", "cohort.tsv row 4"]
    batch = cohort.batch()
    assert batch["image"] == [str(scans / "scans" / "ok.nii.gz"), str(scans / "scans" / "ok2.nii"),
                              str(scans / "scans" / "one_channel.nii.gz")]
    assert batch["age"] == [70.5, 61.0, 89.0]  # "89+" is top-coded: it reads as 89
    assert batch["sex"] == ["F", "M", "M"]
    assert cohort.batch([2, 0])["age"] == [89.0, 70.5]
    assert cohort.subjects() == ["sub-01", "sub-02", "sub-03"]


def test_csv_in_a_subfolder_with_quoted_cells(tmp_path, write_nifti, write_text, cohort_variables, monkeypatch):
    write_nifti(tmp_path / "study" / "img" / "a, b.nii.gz")
    write_text(tmp_path / "study" / "cohort.csv", [
        ["participant_id", "image", "age", "sex"],
        ["s1", '"img/a, b.nii.gz"', "55", "f"],
    ], delimiter=",")
    monkeypatch.chdir(tmp_path)  # relative paths follow the table's folder, not the working directory
    cohort = read_table("study/cohort.csv", cohort_variables)
    record = cohort[0]
    assert record.subject == "sub-s1"
    assert record.values == {"image": str(tmp_path / "study" / "img" / "a, b.nii.gz"), "age": 55.0, "sex": "F"}


def test_txt_is_tab_separated_and_other_suffixes_are_refused(tmp_path, write_text, cohort_variables):
    txt = write_text(tmp_path / "cohort.txt", [["participant_id", "age"], ["1", "50"]])
    assert read_table(txt, cohort_variables).batch()["age"] == [50.0]
    xlsx = write_text(tmp_path / "cohort.xlsx", [["participant_id", "age"], ["1", "50"]])
    with pytest.raises(mv.InputError, match=r"suffix '\.xlsx'; expected a table ending in \.tsv, \.txt, \.csv"):
        read_table(xlsx, cohort_variables)


def test_renamed_columns_and_codes(scans, write_text, cohort_variables):
    table = write_text(scans / "renamed.tsv", [
        ["subject", "t1", "Age_years", "gender", "site"],
        ["1", "scans/ok.nii.gz", "44", "0", "A"],
        ["2", "scans/ok.nii.gz", "45", "1", "B"],
        ["3", "", "46", " 1 ", "B"],
    ])
    spec = DataSpec(subject_column="subject", columns={"image": "t1", "age": "Age_years", "sex": "gender"},
                    codes={"sex": {"0": "F", "1": "M"}})
    batch = read_table(table, cohort_variables, spec).batch()
    assert batch == {"image": [str(scans / "scans" / "ok.nii.gz")] * 2 + [None], "age": [44.0, 45.0, 46.0],
                     "sex": ["F", "M", "M"]}


def test_codes_from_yaml_numbers_and_case_insensitive_codes(tmp_path, write_text, plain_sex_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "sex"], ["1", "FEMALE"], ["2", "0"], ["3", "9"]])
    spec = DataSpec.model_validate({"codes": {"sex": {0: "F", "female": "F", 9: "n/a"}}})  # a code may mean missing
    assert read_table(table, plain_sex_variables, spec).batch()["sex"] == ["F", "F", None]


def test_missing_cells_are_none(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [
        ["participant_id", "image", "age", "sex"],
        ["1", "", "n/a", "N/A"],
        ["2", "n/a", "NaN", ""],
        ["3", "NA", "  ", "nan"],
    ])
    batch = read_table(table, cohort_variables).batch()
    assert batch == {"image": [None] * 3, "age": [None] * 3, "sex": [None] * 3}


def test_custom_missing_markers_replace_the_default(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "age"], ["1", "-999"], ["2", "n/a"]])
    spec = DataSpec(missing=["", "-999"])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables, spec)
    assert err.value.problems[0].place == "row 3"  # "n/a" is no longer a missing marker
    spec = DataSpec(missing=["", "-999", "n/a"])
    assert read_table(table, cohort_variables, spec).batch()["age"] == [None, None]


def test_every_bad_cell_is_reported_at_once_with_row_and_column(scans, write_text, cohort_variables):
    table = write_text(scans / "cohort.tsv", [
        ["participant_id", "image", "age", "sex"],
        ["sub-01", "scans/ok.nii.gz", "70", "F"],
        ["02", "scans/missing.nii.gz", "abc", "X"],
        ["03", "scans/flat.nii.gz", "120", "M"],
        ["04", "scans/corrupt.nii.gz", "60", "m"],
        ["sub-02", "scans/two_channels.nii.gz", "61", "F"],
        ["05", "scans/notes.txt", "n/a", "female"],
    ])
    with pytest.raises(mv.InputError) as err:
        read_table(table, cohort_variables)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{table}: 9 problems in 5 rows; fix them and run again:"
    expected = [
        ("  row 3, column 'image': image: file 'scans/missing.nii.gz' does not exist",),
        ("  row 3, column 'age': age: expected a number", "got 'abc'"),
        ("  row 3, column 'sex': sex: unknown category 'X'", "valid: F, M", "data.codes.sex"),
        ("  row 4, column 'image': image: 'scans/flat.nii.gz' has 2 dimensions (8, 8); expected a 3D image",),
        ("  row 4, column 'age': age: '120' is outside the declared range [40, 95]", "out_of_range: clip"),
        ("  row 5, column 'image': image: cannot read 'scans/corrupt.nii.gz' as NIfTI",),
        ("  row 6, column 'participant_id': duplicate subject sub-02 (also row 3)",),
        ("  row 6, column 'image': image: 'scans/two_channels.nii.gz' has shape (8, 8, 8, 2), i.e. 2 channel(s)",),
        ("  row 7, column 'image': image: 'scans/notes.txt' is not a NIfTI file",),
    ]
    assert len(lines) == 1 + len(expected)
    for line, fragments in zip(lines[1:], expected, strict=True):
        assert line.startswith(fragments[0]), line
        assert all(f in line for f in fragments[1:]), line
    assert isinstance(err.value, CohortError) and len(err.value.problems) == 9


def test_header_problems_are_reported_together(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["subject", "age", "sex"], ["1", "50", "F"], ["2", "x", "F"]])
    spec = DataSpec(columns={"sex": "gender", "agee": "age"}, codes={"sexx": {"0": "F"}})
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables, spec)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{table}: 5 problems in 1 row, data.columns, data.codes and the header; fix them and run again:"
    assert lines[1].startswith("  data.columns: names variable 'agee', which the model does not have "
                               "(did you mean 'age'?)")
    assert lines[2].startswith("  data.codes: names variable 'sexx', which the model does not have "
                               "(did you mean 'sex'?)")
    assert lines[3].startswith("  data.columns: maps 'sex' to column 'gender', which the table does not have; "
                               "columns are 'subject', 'age', 'sex'")
    assert lines[4].startswith("  header: the subject column 'participant_id' is missing;")
    assert "set data.subject_column" in lines[4]
    assert lines[5].startswith("  row 3, column 'age': age: expected a number")


def test_out_of_range_clip_warns_with_a_count(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "age"], ["1", "120"], ["2", "30"], ["3", "50"]])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables)
    assert [p.place for p in err.value.problems] == ["row 2", "row 3"]
    with pytest.warns(CohortWarning, match=r"clipped 2 values of age to \[40, 95\]"):
        cohort = read_table(table, cohort_variables, DataSpec(out_of_range="clip"))
    assert cohort.batch()["age"] == [95.0, 40.0, 50.0]
    assert cohort.clipped == {"age": 2}


def test_sessions_make_repeated_subjects_distinct(tmp_path, write_text, cohort_variables):
    rows = [["participant_id", "session", "age"], ["1", "1", "50"], ["sub-1", "ses-2", "52"], ["1", "ses-1", "51"]]
    table = write_text(tmp_path / "c.tsv", rows)
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables, DataSpec(session_column="session"))
    assert [p.line() for p in err.value.problems] == [
        "  row 4, column 'participant_id': duplicate subject sub-1 session ses-1 (also row 2); "
        "keep one row per subject and session"]
    table = write_text(tmp_path / "c.tsv", rows[:3])
    cohort = read_table(table, cohort_variables, DataSpec(session_column="session"))
    assert [(r.subject, r.session) for r in cohort] == [("sub-1", "ses-1"), ("sub-1", "ses-2")]
    assert cohort.subjects() == ["sub-1"]


def test_empty_subject_and_ragged_rows(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "age"], ["", "50"], ["2", "50", "extra"]])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables)
    assert [(p.place, p.column) for p in err.value.problems] == [("row 3", None), ("row 2", "participant_id")]
    assert "has 3 cells but the header has 2 columns" in err.value.problems[0].message


def test_absent_variables_warn_and_are_left_out_of_batches(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "Age"], ["1", "50"]])  # "Age" matches age
    with pytest.warns(CohortWarning, match="no column for image, sex"):
        cohort = read_table(table, cohort_variables)
    assert cohort.variables == ("age",)
    assert cohort.batch() == {"age": [50.0]}


def test_a_table_with_no_variable_column_is_refused(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "weight"], ["1", "50"]])
    with pytest.raises(CohortError, match="no column holds any of the variables image, age, sex"):
        read_table(table, cohort_variables)


def test_empty_and_headless_tables(tmp_path, write_text, cohort_variables):
    with pytest.raises(mv.InputError, match="is empty; expected a header row"):
        read_table(write_text(tmp_path / "a.tsv", []), cohort_variables)
    with pytest.raises(mv.InputError, match="has a header but no rows"):
        read_table(write_text(tmp_path / "b.tsv", [["participant_id", "age"]]), cohort_variables)
    with pytest.raises(mv.InputError, match="does not exist"):
        read_table(tmp_path / "nothing.tsv", cohort_variables)


def test_at_most_fifty_problem_lines(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "age"]] + [[str(i), "old"] for i in range(60)])
    with pytest.raises(CohortError) as err:
        read_table(table, cohort_variables)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{table}: 60 problems in 60 rows;")
    assert len(lines) == 1 + 50 + 1 and lines[-1] == "  … and 10 more"


def test_read_cohort_dispatches_on_the_path(tmp_path, write_text, cohort_variables):
    table = write_text(tmp_path / "c.tsv", [["participant_id", "age"], ["1", "50"]])
    assert read_cohort(table, cohort_variables).source == str(table)
    bids = tmp_path / "bids"
    write_text(bids / "participants.tsv", [["participant_id", "age"], ["sub-01", "60"]])
    cohort = read_cohort(bids, cohort_variables)
    assert cohort.batch() == {"image": [None], "age": [60.0]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(mv.InputError, match="folder without participants.tsv"):
        read_cohort(tmp_path / "empty", cohort_variables)
    with pytest.raises(mv.InputError, match="does not exist"):
        read_cohort(tmp_path / "missing.tsv", cohort_variables)


def test_batches_train_the_joint_model(scans, write_text, cohort_model):
    table = write_text(scans / "cohort.tsv", [
        ["participant_id", "image", "age", "sex"],
        ["1", "scans/ok.nii.gz", "70", "F"],
        ["2", "n/a", "n/a", "M"],
        ["3", "scans/one_channel.nii.gz", "50", ""],
    ])
    batch = read_table(table, cohort_model.variables).batch()
    z0, present = cohort_model.encode_batch(batch)
    assert present["image"].tolist() == [True, False, True]
    assert present["age"].tolist() == [True, False, True]
    assert present["sex"].tolist() == [True, True, False]
    losses = cohort_model.training_losses(batch, generator=torch.Generator().manual_seed(0))
    assert losses["loss"].shape == (3,) and all(math.isfinite(v) for v in losses["loss"].tolist())
    assert losses["loss/age"][1].item() == 0.0 and losses["loss/image"][1].item() == 0.0


def test_two_columns_matching_a_variable_ignoring_case_are_named_not_dropped(scans, write_text, cohort_variables):
    table = write_text(scans / "cohort.tsv", [["participant_id", "image", "Age", "AGE", "sex"],
                                              ["sub-01", "scans/ok.nii.gz", "70", "71", "F"]])
    with pytest.raises(CohortError, match=r"header: columns 'Age' and 'AGE' both match variable 'age' \(ignoring "
                                          r"case\), so neither is read; name the one to use in data.columns \(e.g. "
                                          r"age: Age\)"):
        read_table(table, cohort_variables)
    assert read_table(table, cohort_variables, DataSpec(columns={"age": "AGE"})).batch()["age"] == [71.0]


def test_a_folder_in_an_image_cell_is_named_as_a_folder(scans, write_text, cohort_variables):
    (scans / "dicom").mkdir()
    table = write_text(scans / "cohort.tsv", [["participant_id", "image", "age", "sex"], ["s1", "dicom", "70", "F"]])
    with pytest.raises(CohortError, match=r"row 2, column 'image': image: 'dicom' is a folder, not an image file; give "
                                          r"a NIfTI file .* needs converting first, e.g. with dcm2niix"):
        read_table(table, cohort_variables)


def test_one_scan_for_several_rows_is_one_warning_naming_the_rows(scans, write_text, cohort_variables):
    (scans / "scans" / "same.nii.gz").symlink_to(scans / "scans" / "ok.nii.gz")  # a link is the same scan too
    table = write_text(scans / "cohort.tsv", [["participant_id", "image", "age", "sex"],
                                              ["s1", "scans/ok.nii.gz", "70", "F"], ["s2", "scans/ok2.nii", "60", "F"],
                                              ["s3", "scans/same.nii.gz", "50", "M"]])
    with pytest.warns(CohortWarning, match=r"one image file serves 2 records \(cohort.tsv row 2, cohort.tsv row 4: "
                                           r".*ok.nii.gz\); each record is read as a scan of its own") as caught:
        read_table(table, cohort_variables)
    assert sum("one image file serves" in str(w.message) for w in caught) == 1
