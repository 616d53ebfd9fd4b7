"""Subject-level splits: no subject in two splits, reproducible, independent of row order, JSON round trip."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import metavoxel as mv
from metavoxel.data import Cohort, Record, SplitSpec, load_splits, save_splits, split_subjects
from metavoxel.data.splits import split_counts


def cohort_of(subjects: list[str], sessions: int = 1) -> Cohort:
    records = [Record(s, f"ses-{k}", f"row {i}", {"age": 50.0}) for i, s in enumerate(subjects)
               for k in range(sessions)]
    return Cohort(tuple(records), ("age",), "test")


def subject_sets(cohort: Cohort, splits: dict[str, list[int]]) -> dict[str, set[str]]:
    return {name: {cohort[i].subject for i in idx} for name, idx in splits.items()}


ids = st.lists(st.text("abcdefXYZ0123-", min_size=1, max_size=8).map(lambda s: f"sub-{s}"),
               min_size=0, max_size=40, unique=True)
fractions = st.floats(0.0, 0.45)


@given(ids, st.integers(1, 3), fractions, fractions, st.integers(0, 2**31), st.randoms(use_true_random=False))
def test_splits_partition_subjects_reproducibly_whatever_the_row_order(subjects, sessions, val, test, seed, rnd):
    spec = SplitSpec(val=val, test=test, seed=seed)
    cohort = cohort_of(subjects, sessions)
    splits = split_subjects(cohort, spec)
    assert sorted(i for idx in splits.values() for i in idx) == list(range(len(cohort)))  # every record once
    sets = subject_sets(cohort, splits)
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert split_subjects(cohort, spec) == splits  # reproducible
    shuffled = list(cohort.records)
    rnd.shuffle(shuffled)
    again = Cohort(tuple(shuffled), cohort.variables)
    assert subject_sets(again, split_subjects(again, spec)) == sets  # independent of row order
    if len(subjects) >= 3:
        assert sets["train"]
        assert bool(sets["val"]) == (val > 0) and bool(sets["test"]) == (test > 0)


@pytest.mark.parametrize(("n", "val", "test", "expected"), [
    (10, 0.1, 0.1, (8, 1, 1)), (3, 0.1, 0.1, (1, 1, 1)), (3, 0.0, 0.1, (2, 0, 1)), (2, 0.1, 0.1, (2, 0, 0)),
    (2, 0.4, 0.4, (1, 0, 1)), (1, 0.3, 0.3, (1, 0, 0)), (0, 0.1, 0.1, (0, 0, 0)), (100, 0.15, 0.2, (65, 15, 20)),
])
def test_split_counts(n, val, test, expected):
    assert split_counts(n, val, test) == expected


def test_the_seed_changes_the_split_and_val_leaves_test_alone():
    cohort = cohort_of([f"sub-{i:02d}" for i in range(30)])
    a = subject_sets(cohort, split_subjects(cohort, SplitSpec(seed=0)))
    assert a != subject_sets(cohort, split_subjects(cohort, SplitSpec(seed=1)))
    b = subject_sets(cohort, split_subjects(cohort, SplitSpec(seed=0, val=0.3)))
    assert b["test"] == a["test"] and len(b["val"]) == 9


def test_adding_a_subject_moves_no_other():
    subjects = [f"sub-{i:02d}" for i in range(30)]
    spec = SplitSpec(val=0.2, test=0.2)
    before = subject_sets(cohort_of(subjects), split_subjects(cohort_of(subjects), spec))
    after = subject_sets(cohort_of(subjects[:29]), split_subjects(cohort_of(subjects[:29]), spec))
    moved = [s for s in subjects[:29] if not any(s in before[k] and s in after[k] for k in before)]
    assert len(moved) <= 2  # only the boundary can shift when a count changes by one


def test_sessions_of_a_bids_subject_share_a_split(tmp_path, write_nifti, write_text, cohort_variables):
    from metavoxel.data import read_bids

    write_text(tmp_path / "participants.tsv", [["participant_id", "age"]] + [[f"{i:02d}", "60"] for i in range(6)])
    for i in range(6):
        for ses in ("ses-1", "ses-2"):
            write_nifti(tmp_path / f"sub-{i:02d}" / ses / "anat" / f"sub-{i:02d}_{ses}_T1w.nii.gz")
    with pytest.warns(mv.data.CohortWarning):
        cohort = read_bids(tmp_path, cohort_variables)
    splits = split_subjects(cohort, SplitSpec(val=0.2, test=0.2))
    for idx in splits.values():
        assert idx and len(idx) % 2 == 0  # both sessions of every subject together
        assert all({r.session for r in cohort.records if r.subject == cohort[i].subject} == {"ses-1", "ses-2"}
                   for i in idx)


def test_json_round_trip(tmp_path):
    cohort = cohort_of([f"sub-{i}" for i in range(12)], sessions=2)
    splits = split_subjects(cohort, SplitSpec(val=0.25, test=0.25, seed=3))
    path = tmp_path / "splits.json"
    path.write_text("old")  # replaced atomically
    assert save_splits(path, splits, cohort) == path
    document = json.loads(path.read_text())
    assert document["format"] == "metavoxel.splits/1"
    assert sorted(document["train"] + document["val"] + document["test"]) == cohort.subjects()
    assert len(document["val"]) == 3 and len(document["test"]) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]  # no temporary file left
    assert load_splits(path, cohort) == splits
    shuffled = list(cohort.records)
    random.Random(0).shuffle(shuffled)
    other = Cohort(tuple(shuffled), cohort.variables)
    assert subject_sets(other, load_splits(path, other)) == subject_sets(cohort, splits)


def test_save_refuses_leaks_and_foreign_indices(tmp_path):
    cohort = cohort_of(["sub-a", "sub-b"], sessions=2)  # records 0, 1: sub-a; 2, 3: sub-b
    with pytest.raises(mv.InputError, match="subject sub-a has records in both train and test"):
        save_splits(tmp_path / "s.json", {"train": [0, 2, 3], "val": [], "test": [1]}, cohort)
    with pytest.raises(mv.InputError, match="record index 9, but the cohort has 4 records"):
        save_splits(tmp_path / "s.json", {"train": [9]}, cohort)
    with pytest.raises(mv.InputError, match="unknown split name"):
        save_splits(tmp_path / "s.json", {"training": [0]}, cohort)
    assert not list(tmp_path.iterdir())


def test_load_refuses_bad_files_and_unlisted_subjects(tmp_path):
    cohort = cohort_of(["sub-a", "sub-b", "sub-c"])
    path = tmp_path / "s.json"
    with pytest.raises(mv.InputError, match="does not exist"):
        load_splits(path, cohort)
    path.write_text("{not json")
    with pytest.raises(mv.InputError, match="is not valid JSON"):
        load_splits(path, cohort)
    path.write_text(json.dumps({"train": ["sub-a"]}))
    with pytest.raises(mv.InputError, match="is not a metavoxel splits file"):
        load_splits(path, cohort)
    document = {"format": "metavoxel.splits/1", "train": ["sub-a", "sub-gone"], "val": ["sub-b"], "test": []}
    path.write_text(json.dumps(document))
    with pytest.raises(mv.InputError, match=r"does not list 1 subject\(s\) of the cohort \(sub-c\)"):
        load_splits(path, cohort)
    path.write_text(json.dumps({**document, "test": ["sub-c", "sub-b"]}))
    with pytest.raises(mv.InputError, match="puts subject sub-b in both val and test"):
        load_splits(path, cohort)
    path.write_text(json.dumps({**document, "test": ["sub-c"]}))  # sub-gone is ignored
    assert load_splits(path, cohort) == {"train": [0], "val": [1], "test": [2]}
