"""The ``data:`` section of a model spec: how a cohort's table or BIDS tree maps onto the variables.

Only this module knows pydantic; the readers take a validated `DataSpec` and read plain values from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_MISSING", "DataSpec", "SplitSpec"]

DEFAULT_MISSING = ("", "n/a", "na", "nan", "NaN", "N/A")

# YAML reads ``codes: {sex: {0: F}}`` with an integer key; numbers become their text so codes stay strings.
_STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class SplitSpec(BaseModel):
    """Fractions of *subjects* held out for validation and test; the rest train.

    Subjects are ranked by a hash of ``(seed, subject id)``, so the split depends only on the seed and the
    set of subject ids — never on row order (see `metavoxel.data.splits`).
    """

    model_config = _STRICT
    val: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of subjects for validation.")
    test: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of subjects for the test set.")
    seed: int = Field(0, ge=0, description="Seed of the subject ranking.")

    @model_validator(mode="after")
    def _leaves_training(self) -> SplitSpec:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must be below 1 so some subjects train, got {self.val} + {self.test}; "
                             "lower them")
        return self


class DataSpec(BaseModel):
    """How cohort files map onto the model's variables.

    Cells are stripped of surrounding whitespace; a cell is missing when it equals one of ``missing``
    ignoring case. Codes are looked up exactly first, then ignoring case; what a code maps to goes through
    the variable's own ``parse`` like any other cell.
    """

    model_config = _STRICT
    columns: dict[str, str] = Field(default_factory=dict, description=(
        "Variable name -> column name (default: the variable's own name; for BIDS the image variable "
        "defaults to the *_T1w file of each subject/session)."))
    subject_column: str = Field("participant_id", min_length=1,
                                description="Column with the subject id; 'sub-01' and '01' are one subject.")
    session_column: str | None = Field(None, min_length=1, description=(
        "Column with the session id in a table, or in a BIDS participants.tsv kept one row per session "
        "(there 'session_id' or 'session' is found without this); BIDS sessions.tsv files use session_id."))
    codes: dict[str, dict[str, str]] = Field(default_factory=dict, description=(
        "Variable -> {raw code -> value given to the variable's parse}, e.g. {sex: {'0': F, '1': M}}."))
    missing: list[str] = Field(default_factory=lambda: list(DEFAULT_MISSING),
                               description="Cell texts that mean a missing value (compared ignoring case).")
    out_of_range: Literal["error", "clip"] = Field("error", description=(
        "A continuous value outside its declared range: report it ('error') or clip it to the range with a "
        "warning that counts the clipped values ('clip')."))
    bids_suffix: str = Field("T1w", pattern=r"^[A-Za-z0-9]+$",
                             description="BIDS image files are anat/*_{suffix}.nii.gz (or .nii).")
    split: SplitSpec = Field(default_factory=SplitSpec)
