"""A cohort: one `Record` per scan (or per subject with metadata only), ready to batch for training."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metavoxel.data.problems import list_places

__all__ = ["Cohort", "Record", "record_keys", "session_id", "subject_id", "subject_seed", "without_image_note"]


def subject_id(text: str | None) -> str | None:
    """The canonical BIDS subject id: ``"01"`` and ``"sub-01"`` are both ``"sub-01"``; blank gives None."""
    text = (text or "").strip()
    if not text or text == "sub-":
        return None
    return text if text.startswith("sub-") else f"sub-{text}"


def session_id(text: str | None) -> str | None:
    """The canonical BIDS session id: ``"1"`` and ``"ses-1"`` are both ``"ses-1"``; blank gives None."""
    text = (text or "").strip()
    if not text or text == "ses-":
        return None
    return text if text.startswith("ses-") else f"ses-{text}"


def subject_seed(seed: int, subject: str, session: str | None, record: str | None = None) -> int:
    """A 63-bit seed of ``(seed, subject, session[, record])`` (SHA-256): a record's random draws depend on
    nothing else in the table — not its row, not the records sampled beside it.

    ``record`` tells apart several records of one subject and session (BIDS runs: ``run-1``, ``run-2``), which
    would otherwise draw the same noise; None (one record per subject and session) gives the seed of
    ``(seed, subject, session)`` alone, as before records were told apart. See `record_keys`.
    """
    text = f"{int(seed)}\0{subject}\0{session or ''}" + ("" if record is None else f"\0{record}")
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def record_keys(records: Sequence[Record]) -> list[tuple[str, str | None, str | None]]:
    """``(subject, session, record)`` of each record, what `subject_seed` takes after the seed.

    ``record`` is the record's ``source`` (for BIDS its image file, e.g. ``sub-01/ses-1/anat/sub-01_ses-1_run-2_
    T1w.nii.gz``) when another of ``records`` has the same subject and session (several runs), else None: a
    record alone in its subject and session keeps the seed of ``(seed, subject, session)``.
    """
    counts: dict[tuple[str, str | None], int] = {}
    for r in records:
        counts[(r.subject, r.session)] = counts.get((r.subject, r.session), 0) + 1
    return [(r.subject, r.session, r.source if counts[(r.subject, r.session)] > 1 else None) for r in records]


@dataclass(frozen=True)
class Record:
    """One entry of a cohort.

    Args:
        subject: canonical subject id (``"sub-01"``).
        session: canonical session id (``"ses-1"``) or None.
        source: where it came from: ``"cohort.tsv row 7"`` (rows counted as a spreadsheet shows them, the
            header being row 1) or the image file relative to the BIDS root.
        values: variable name -> raw value (image: absolute path string; continuous: float; categorical:
            label) or None when missing.
    """

    subject: str
    session: str | None
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cohort:
    """The validated records of a cohort and the variables it provides.

    Args:
        records: the records, in file order.
        variables: the variables the cohort has a column (or files) for; the others are absent, which
            `metavoxel.JointModel.encode_batch` treats as missing for every record.
        source: the table or BIDS root it was read from.
        clipped: variable -> how many values were clipped to the declared range.
        images: the image variables among ``variables`` (a record missing all of them trains metadata only).
    """

    records: tuple[Record, ...]
    variables: tuple[str, ...]
    source: str = ""
    clipped: Mapping[str, int] = field(default_factory=dict)
    images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "images", tuple(self.images))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def batch(self, indices: Sequence[int] | None = None) -> dict[str, list[Any]]:
        """Raw values of the chosen records (default: all), as `JointModel.training_losses` takes them.

        Returns:
            variable -> list of B raw values (image paths, floats, labels; None where missing).
        """
        chosen = range(len(self.records)) if indices is None else indices
        records = [self.records[int(i)] for i in chosen]
        return {name: [r.values.get(name) for r in records] for name in self.variables}

    def subjects(self) -> list[str]:
        """The distinct subject ids, sorted."""
        return sorted({r.subject for r in self.records})

    def select(self, indices: Sequence[int]) -> Cohort:
        """A cohort of the chosen records (e.g. one split), keeping the variables and source."""
        return Cohort(tuple(self.records[int(i)] for i in indices), self.variables, self.source, self.clipped,
                      self.images)

    def without_image(self) -> list[Record]:
        """The records with none of the image variables (they train the metadata only); [] without images."""
        if not self.images:
            return []
        return [r for r in self.records if all(r.values.get(n) is None for n in self.images)]

    def summary(self) -> str:
        """One line for the user before training: records, subjects, and how many have no image.

        Example: ``cohort.tsv: 16 records of 8 subjects, 14 with an image, 2 without (metadata only: ...)``.
        """
        subjects = len(self.subjects())
        line = (f"{self.source}: {len(self)} record{'s' if len(self) != 1 else ''} of {subjects} "
                f"subject{'s' if subjects != 1 else ''}")
        if self.images:
            missing = self.without_image()
            line += f", {len(self) - len(missing)} with an image"
            if missing:
                line += f", {len(missing)} without ({without_image_note(missing, short=True)})"
        return line


def without_image_note(records: Sequence[Record], *, short: bool = False, use: str = "train") -> str:
    """``2 rows have no image and are kept to train the metadata only: row 4, row 9`` (places named).

    ``use="predict"``: ``2 records have no image; each is predicted from its other given variables: ...``.
    """
    places = list_places([r.source for r in records])
    if short:
        return f"metadata only: {places}"
    n = len(records)
    if use == "predict":
        return (f"{n} record{'s have' if n != 1 else ' has'} no image; {'each is' if n != 1 else 'it is'} predicted "
                f"from {'its' if n == 1 else 'their'} other given variables only: {places}")
    return (f"{n} record{'s have' if n != 1 else ' has'} no image and {'are' if n != 1 else 'is'} kept to train "
            f"the metadata only: {places}")
