"""Decoded values are finite, checked where they are made: one `decode` call, one check, one message.

A kind's ``decode`` turns a sampled z0 back into values. When it maps an unbounded z0 through a function
that grows fast — ``exp`` of a log-mapped kind, say — a z0 far outside where ``encode`` puts data (which a
lightly trained model gives when nothing clips its estimate) overflows to ``inf``, and the NaN it becomes
downstream used to surface much later as a broken summary. `checked_decode` names the variable, its kind,
what was non-finite and the likely fix: declare ``x0_range`` (`metavoxel.ClipsDenoised`), so every reverse
step clips its estimate of z0 to where clean z lies. The sampler, the point predictor and the conformance
suite's tiny joint model all decode through it.
"""

from __future__ import annotations

import torch

from metavoxel.errors import PluginError
from metavoxel.variables.capabilities import ClipsDenoised
from metavoxel.variables.protocol import Variable

__all__ = ["NonFiniteValues", "checked_decode"]


class NonFiniteValues(PluginError):
    """A kind's ``decode`` gave NaN or infinite values (the kind's fault, not the user's input: exit code 1)."""


def checked_decode(variable: Variable, z0: torch.Tensor) -> torch.Tensor:
    """``variable.decode(z0)`` when every decoded number is finite.

    Args:
        variable: the variable whose kind decodes.
        z0: its sampled clean state (B, *z_shape).

    Raises:
        NonFiniteValues: one line naming the variable, the kind, how many values were NaN or infinite, the range
            of z0 they came from, and the fix.
    """
    values = variable.decode(z0)
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        return values  # labels, indices: nothing to overflow
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return values
    nan, inf = int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
    bad = " and ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "infinite")) if n)
    where = f"variable {variable.name!r} of kind {variable.kind!r}: decode gave {bad} value(s) of {values.numel()}"
    z = z0.detach().double()
    if not bool(torch.isfinite(z).all()):
        raise NonFiniteValues(f"{where}, because the sampled z0 itself holds NaN or infinite values: the kind's "
                              "reverse_step (or the network's output for it) made them; check its reverse steps")
    clips = variable.x0_range if isinstance(variable, ClipsDenoised) else None
    if clips is None:
        fix = ("declare x0_range (mv.ClipsDenoised) on the kind, so every reverse step clips its estimate of z0 to "
               "where encode puts values, or make decode saturate")
    else:
        fix = f"decode is not finite even for z0 inside x0_range {tuple(clips)}; make decode saturate"
    raise NonFiniteValues(f"{where} from z0 in [{float(z.min()):.3g}, {float(z.max()):.3g}]; {fix} (a lightly "
                          "trained model samples z0 far from where encode puts data)")
