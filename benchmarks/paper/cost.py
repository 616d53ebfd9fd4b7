"""The compute a paper-benchmark configuration needs, counted (not timed) on the meta device.

    python benchmarks/paper/cost.py --config paper
    python benchmarks/paper/cost.py --config small --measured-minutes 19.0   # with the CPU time it took

For each network the benchmark trains, one optimiser step (forward and backward at the configuration's
batch size) is run on PyTorch's meta device under ``torch.utils.flop_counter.FlopCounterMode``, so no
memory is allocated and nothing is computed; the counts times the configured steps give the total. Also
counted: one reverse step of sampling per subject. Only matrix multiplications and convolutions are
counted (what FlopCounterMode knows); element-wise work, data loading and the optimiser are not.

This gives the expected cost of a configuration that has not been run (``paper``) as floating-point work.
Turning it into hours needs the throughput of one's own device, which is a measurement, not a constant:
divide the total by the rate a run of this benchmark achieves there (the ``small`` run's rate on 2 CPU
cores is printed with ``--measured-minutes``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import CONFIGS, BenchConfig  # noqa: E402

from metavoxel.baselines import BaselineConfig, build_baseline  # noqa: E402
from metavoxel.diffusion.joint import JointModel  # noqa: E402
from metavoxel.vae.architecture import VAESpec, build_vae  # noqa: E402
from metavoxel.workflows.study import study_spec  # noqa: E402

META = torch.device("meta")


def step_flops(module: torch.nn.Module, forward, *, backward: bool = True) -> tuple[int, int]:
    """(FLOPs of ``forward(module)`` [+ its backward] on the meta device, the module's parameter count)."""
    module = module.to(META)
    counter = FlopCounterMode(display=False)
    with counter:
        out = forward(module)
        if backward:
            tensors = list(out.values()) if isinstance(out, dict) else [out]
            sum(o.float().sum() for o in tensors if o.requires_grad).backward()
    return counter.get_total_flops(), sum(p.numel() for p in module.parameters())


def denoise_call(model: JointModel, batch: int):
    """One U-Net call on ``batch`` records: every variable at its prior, one timestep each."""
    def forward(net: torch.nn.Module) -> dict:
        z = {n: var.prior(batch, generator=None, device=META) for n, var in model.variables.items()}
        return model.denoise(z, torch.ones(batch, dtype=torch.long, device=META))
    return forward


def costs(bench: BenchConfig) -> list[dict]:
    recipe = bench.recipe
    shape = recipe.shape
    rows = []
    vae = build_vae(3, 1, VAESpec(channels=list(recipe.vae_channels), latent_channels=recipe.vae_latent_channels,
                                  num_res_blocks=1, norm_num_groups=min(8, recipe.vae_channels[0])))
    flops, params = step_flops(vae, lambda m: m(torch.randn(recipe.vae_batch_size, 1, *shape, device=META))[0])
    rows.append({"network": "KL-VAE (train step)", "params": params, "step_flops": flops, "steps": recipe.vae_steps,
                 "count": 1})
    for variant, count in (("joint", 2), ("image-only", 1)):  # continuous-sex costs what joint costs
        model = JointModel(study_spec(recipe, variant), load_weights=False)
        flops, params = step_flops(model.net, denoise_call(model, recipe.batch_size))
        label = "U-Net, MetaVoxel and continuous-sex" if variant == "joint" else "U-Net, image-only LDM"
        rows.append({"network": f"{label} (train step)", "params": params, "step_flops": flops,
                     "steps": recipe.train_steps, "count": count})
        if variant == "joint":
            flops, _ = step_flops(model.net, denoise_call(model, 1), backward=False)
            rows.append({"network": "U-Net, one reverse step of one sample", "params": params, "step_flops": flops,
                         "steps": None, "count": None})
    for arch, widths in (("densenet121", bench.densenet), ("vit", bench.vit)):
        config = BaselineConfig(arch=arch, task="regression", extra_inputs=1, steps=bench.baseline_steps,
                                batch_size=bench.baseline_batch_size, **widths)
        net = build_baseline(config, 3, shape)
        b = bench.baseline_batch_size
        flops, params = step_flops(net, lambda m: m(torch.randn(b, 1, *shape, device=META),
                                                    torch.randn(b, 1, device=META)))
        rows.append({"network": f"{arch} (train step)", "params": params, "step_flops": flops,
                     "steps": bench.baseline_steps, "count": 2})
    return rows


def report(name: str, bench: BenchConfig, rows: list[dict], measured_minutes: float | None) -> str:
    lines = [f"Configuration `{name}`: {bench.notes}", "",
             "| network | parameters | GFLOP per call | calls | total PFLOP |", "|---|---|---|---|---|"]
    total = 0.0
    for r in rows:
        calls = None if r["steps"] is None else r["steps"] * r["count"]
        work = None if calls is None else r["step_flops"] * calls
        total += work or 0.0
        lines.append(f"| {r['network']} | {r['params'] / 1e6:.1f} M | {r['step_flops'] / 1e9:,.1f} | "
                     f"{'—' if calls is None else f'{calls:,}'} | {'—' if work is None else f'{work / 1e15:.3f}'} |")
    lines.append(f"| **training, all networks** | | | | **{total / 1e15:.3f}** |")
    if measured_minutes:
        rate = total / (measured_minutes * 60) / 1e9
        lines += ["", f"Measured: the training stages took {measured_minutes:g} min, i.e. {rate:.1f} GFLOP/s "
                      "achieved (counted convolutions and matmuls only)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--measured-minutes", type=float, default=None,
                        help="Wall time the training stages (VAE, three U-Nets, four baselines) took, to print "
                             "the achieved rate.")
    args = parser.parse_args(argv)
    bench = CONFIGS[args.config]
    print(report(args.config, bench, costs(bench), args.measured_minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
