"""The data: section of a spec, and the pieces cells are read with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from metavoxel.data import DataSpec, SplitSpec
from metavoxel.data.cells import TOP_CODED, CellReader
from metavoxel.data.records import session_id, subject_id


def test_defaults():
    spec = DataSpec()
    assert spec.subject_column == "participant_id" and spec.session_column is None
    assert spec.missing == ["", "n/a", "na", "nan", "NaN", "N/A"]
    assert spec.out_of_range == "error" and spec.bids_suffix == "T1w"
    assert (spec.split.val, spec.split.test, spec.split.seed) == (0.1, 0.1, 0)


@pytest.mark.parametrize("bad", [
    {"colums": {}}, {"out_of_range": "drop"}, {"bids_suffix": "*_T1w"}, {"subject_column": ""},
    {"split": {"val": 0.5, "test": 0.5}}, {"split": {"val": 1.0, "test": 0.0}}, {"split": {"test": -0.1}},
    {"split": {"train": 0.8}},
])
def test_invalid_specs_are_refused(bad):
    with pytest.raises(ValidationError):
        DataSpec.model_validate(bad)


def test_split_fractions_must_leave_training_subjects():
    with pytest.raises(ValidationError, match="val \\+ test must be below 1"):
        SplitSpec(val=0.6, test=0.4)
    assert SplitSpec(val=0.0, test=0.99).test == 0.99


def test_json_round_trip_and_numeric_codes():
    spec = DataSpec.model_validate({"columns": {"age": "Age"}, "codes": {"sex": {0: "F", 1: "M"}},
                                    "missing": ["", -999], "split": {"seed": 7}})
    assert spec.codes == {"sex": {"0": "F", "1": "M"}} and spec.missing == ["", "-999"]
    assert DataSpec.model_validate_json(spec.model_dump_json()) == spec


def test_ids_are_canonical():
    assert subject_id("01") == subject_id(" sub-01 ") == "sub-01"
    assert subject_id("") is None and subject_id("sub-") is None and subject_id(None) is None
    assert session_id("1") == session_id("ses-1") == "ses-1" and session_id("n") == "ses-n"


@pytest.mark.parametrize(("text", "number"), [("89+", "89"), ("89 +", "89"), ("89.5+", "89.5"), ("+90+", "+90")])
def test_top_coded_numbers(text, number):
    assert TOP_CODED.match(text).group(1) == number


@pytest.mark.parametrize("text", ["89", "+89", "89++", "a+", "+"])
def test_not_top_coded(text):
    assert TOP_CODED.match(text) is None


def test_cell_reader_order_missing_codes_parse(tmp_path, cohort_variables):
    age = CellReader(cohort_variables["age"], DataSpec(codes={"age": {"old": "90", "?": "n/a"}}))
    assert age.read("old", tmp_path) == 90.0 and age.read("?", tmp_path) is None
    assert age.read(" N/A ", tmp_path) is None and age.read(None, tmp_path) is None
    assert age.read("94+", tmp_path) == 94.0
    clip = CellReader(cohort_variables["age"], DataSpec(out_of_range="clip"))
    assert [clip.read(t, tmp_path) for t in ("30", "100", "60")] == [40.0, 95.0, 60.0] and clip.clipped == 2
