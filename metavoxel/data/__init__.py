"""Cohorts: from a table or a BIDS tree to validated records, batches and subject splits."""

from metavoxel.data.bids import read_bids
from metavoxel.data.problems import CohortError, CohortWarning, Problem
from metavoxel.data.read import read_cohort
from metavoxel.data.records import Cohort, Record
from metavoxel.data.spec import DataSpec, SplitSpec
from metavoxel.data.splits import load_splits, save_splits, split_subjects
from metavoxel.data.table import read_table

__all__ = [
    "Cohort", "CohortError", "CohortWarning", "DataSpec", "Problem", "Record", "SplitSpec", "load_splits",
    "read_bids", "read_cohort", "read_table", "save_splits", "split_subjects",
]
