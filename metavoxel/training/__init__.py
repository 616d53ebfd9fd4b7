"""Training loops."""

from metavoxel.training.fit import encode_records, fit

__all__ = ["encode_records", "fit"]
