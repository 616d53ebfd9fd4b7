"""What a random seed may be, checked where the option is made.

A seed is an integer in ``[0, 2**63 - 1]``: every consumer holds it — a ``torch.Generator`` (which refuses
integers past 64 bits with a bare ``ValueError: Overflow``), the Philox key of the kernels
(`metavoxel.kernels.rng`), an int64 tensor, JSON read back by other tools. The CLI checks each ``--seed``
as it parses it and the library checks a ``seed`` argument where it first takes it, so an out-of-range seed
is one line naming the option, never a traceback after the work has started.
"""

from __future__ import annotations

from typing import Any

from metavoxel.errors import InputError

__all__ = ["SEED_MAX", "check_seed"]

SEED_MAX = 2**63 - 1


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` as an int when it is a seed (an integer in [0, `SEED_MAX`]); else InputError naming ``what``.

    Raises:
        InputError: not an integer (bools are not), or outside [0, 2**63 - 1].
    """
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            as_int = None
        if isinstance(value, bool) or as_int is None or as_int != value:
            raise InputError(f"{what} {value!r}: expected a whole number in [0, {SEED_MAX}]; give e.g. {what} 0")
        value = as_int
    if not 0 <= value <= SEED_MAX:
        raise InputError(f"{what} {value} is outside [0, {SEED_MAX}] (0 to 2^63 - 1, what random generators hold); "
                         f"give a seed in that range, e.g. {what} 0")
    return int(value)
