"""The demo's round trip read back two ways: from the generated brains (decoded, then re-encoded by the VAE,
as `metavoxel demo` does) and from the generated latents themselves (no VAE in between).

Brains are generated for ages 45/70/90 of each sex (4 each) at every guidance weight given, and age is read
back from image + sex by point prediction. The latents are kept by wrapping the image variable's ``decode``;
the second read-back hands them back through its ``encode``. Prints one JSON line per weight.

    OMP_NUM_THREADS=2 python benchmarks/round_trip_latents.py runs/exp/lw4/model 0 2 5

(`benchmarks/demo_trials.py` trains such a run; `benchmarks/RESULTS.md`, "`make demo` with age's loss
weighted 4x", lists what it showed.)
"""
import json
import sys
from pathlib import Path

import numpy as np

from metavoxel.runs import load_run


def main(run: str, weights: list[float]) -> None:
    model = load_run(Path(run))
    var = model.variables["image"]
    kept: dict = {}
    decode, encode = var.decode, var.encode

    def keeping_decode(z0):
        kept["z"] = z0.detach().clone()
        return decode(z0)

    var.decode = keeping_decode
    wanted = [(a, s) for s in ("F", "M") for a in (45.0, 70.0, 90.0) for _ in range(4)]
    requested = np.array([a for a, _ in wanted])

    def stats(read: np.ndarray) -> dict:
        return {"r": round(float(np.corrcoef(requested, read)[0, 1]), 3),
                "slope": round(float(np.polyfit(requested, read, 1)[0]), 3),
                "means": [round(float(read[requested == a].mean()), 1) for a in (45.0, 70.0, 90.0)]}

    for w in weights:
        gen = model.sample(fix={"age": [a for a, _ in wanted], "sex": [s for _, s in wanted]}, steps=50, seed=0,
                           batch_size=96, guidance=w)
        given = {"image": gen.samples["image"][:, 0], "sex": [s for _, s in wanted]}
        images = model.point_predict(given, ["age"], seed=0).mean["age"].double().numpy()
        latents = kept["z"]
        var.encode = lambda values: latents.to(values.device)  # the generated latents, not a re-encoding
        try:
            direct = model.point_predict(given, ["age"], seed=0).mean["age"].double().numpy()
        finally:
            var.encode = encode
        print(json.dumps({"guidance": w, "decoded_reencoded": stats(images), "latents": stats(direct)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [float(x) for x in sys.argv[2:]] or [2.0])
