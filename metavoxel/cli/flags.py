"""The command line's spelling of the library's request options: an `metavoxel.errors.OptionError` names an option
by its API name (``num_samples``); the CLI prints it with the flag a user types (``--num-samples``)."""

from __future__ import annotations

__all__ = ["FLAGS"]

#: API option name -> its command-line flag.
FLAGS = {"num_samples": "--num-samples", "steps": "--steps", "grid": "--grid", "seed": "--seed", "seeds": "--seed",
         "batch_size": "--batch-size", "precision": "--precision", "conditioning": "--conditioning",
         "guidance": "--guidance", "method": "--method", "draws": "--draws", "levels": "--levels",
         "refine": "--refine", "output": "--output"}
