"""The example third-party plugins metavoxel-ordinal and metavoxel-bounded, installed as a user would.

Both distributions are pip-installed (offline, no build isolation) into a temporary directory that is put
on ``sys.path`` for this module only, so their kinds reach metavoxel through the ``metavoxel`` entry-point
group of their own dist-info. Then: the conformance suite, the math of the ordinal process against brute
force, the bounded transform, and one small joint model mixing both with built-in kinds.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tiny_specs import TINY_NET_2D

import metavoxel as mv
from metavoxel.testing import conformance_cases, run_check
from metavoxel.presets import PAPER_TRAINING

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"ordinal": "metavoxel-ordinal", "bounded": "metavoxel-bounded"}
PACKAGES = ("metavoxel_ordinal", "metavoxel_bounded")
CDR = [0.0, 0.5, 1.0, 2.0, 3.0]
CDR_LABELS = ["none", "questionable", "mild", "moderate", "severe"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Both distributions pip-installed into a fresh directory, on sys.path while this module runs."""
    tmp = tmp_path_factory.mktemp("example_plugins")
    # build from copies, so the build leaves no build/ or *.egg-info in the repository
    sources = [str(shutil.copytree(ROOT / "plugins" / dist, tmp / "src" / dist)) for dist in DISTRIBUTIONS.values()]
    target = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), *sources]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    saved = list(sys.path)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def registry(site) -> mv.Registry:
    return mv.build_registry(strict=True)


@pytest.fixture(scope="module")
def ordinal(site):
    """The installed ordinal modules: (process module, loss module, plugin module)."""
    return tuple(importlib.import_module(f"metavoxel_ordinal.{m}") for m in ("process", "loss", "plugin"))


@pytest.fixture(scope="module")
def cdr(registry):
    kind = registry.get("ordinal")
    spec = kind.spec.model_validate({"name": "cdr", "kind": "ordinal", "levels": CDR, "labels": CDR_LABELS})
    return kind.build(spec, mv.BuildContext(100, {}, spatial_dims=2))


@pytest.fixture(scope="module")
def mmse(registry):
    kind = registry.get("bounded")
    spec = kind.spec.model_validate({"name": "mmse", "kind": "bounded", "range": [0, 30]})
    return kind.build(spec, mv.BuildContext(100, {"gaussian": mv.make_schedule("scaled_linear", 100)}, spatial_dims=2))


# -- discovery ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(DISTRIBUTIONS))
def test_kinds_come_from_their_installed_distributions(registry, site, kind):
    origin = registry.origin(kind)
    assert (origin.distribution, origin.version) == (DISTRIBUTIONS[kind], "0.1.0")
    assert origin.entry_point == f"metavoxel_{kind}.plugin"
    assert Path(md.distribution(DISTRIBUTIONS[kind]).locate_file("")).resolve() == site.resolve()
    module = sys.modules[registry.get(kind).build.__module__]
    assert Path(module.__file__).resolve().is_relative_to(site.resolve()), "imported from the source tree, not the install"
    assert not registry.failures


@pytest.mark.parametrize("kind", sorted(DISTRIBUTIONS))
def test_conformance(registry, kind):
    cases = [c for c in conformance_cases(registry) if c.values[0].name == kind]
    assert len(cases) >= 12, f"{kind} declares too few examples: {[c.id for c in cases]}"
    failures = []
    for case in cases:
        try:
            run_check(*case.values)
        except AssertionError as exc:
            failures.append(f"{case.id}: {exc}")
    assert not failures, "\n".join(failures)


# -- the ordinal process -------------------------------------------------------------------------------
def _chain(Q: torch.Tensor, s: int, t: int) -> torch.Tensor:
    """Q_{s+1} ⋯ Q_t by explicit matrix products (the identity when t == s)."""
    out = torch.eye(Q.shape[-1], dtype=torch.float64)
    for i in range(s + 1, t + 1):
        out = out @ Q[i]
    return out


@pytest.fixture(scope="module")
def process(ordinal):
    proc, _, _ = ordinal
    return proc.NeighbourProcess(proc.neighbour_schedule(40, 5), 5)


def test_every_transition_matrix_is_row_stochastic(process):
    for name, mats in (("Q", process.Q), ("Qbar", process.Qbar)):
        assert mats.shape == (41, 5, 5) and mats.dtype == torch.float64
        assert (mats >= 0).all(), f"{name} has negative entries"
        torch.testing.assert_close(mats.sum(-1), torch.ones(41, 5, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(process.Qbar[0], torch.eye(5, dtype=torch.float64))


def test_cumulative_matrices_are_the_products_of_the_steps(process):
    R = process.walk - torch.eye(5, dtype=torch.float64)
    x0 = torch.arange(5).repeat(8)  # (40,)
    t = torch.arange(1, 41)
    for step in (1, 2, 7, 20, 40):
        torch.testing.assert_close(process.Qbar[step], _chain(process.Q, 0, step), rtol=0, atol=1e-12)
        # an independent route: the Q_t commute, so Qbar_t = exp(B_t R)
        torch.testing.assert_close(process.Qbar[step], torch.linalg.matrix_exp(process.rates[step] * R), rtol=0, atol=1e-10)
    torch.testing.assert_close(process.q_probs(x0, t), process.Qbar[t, x0])
    for s, step in ((0, 9), (3, 4), (5, 31), (12, 40)):
        torch.testing.assert_close(process.k_step(s, step), _chain(process.Q, s, step), rtol=0, atol=1e-12)
        torch.testing.assert_close(process.Qbar[s] @ process.k_step(s, step), process.Qbar[step], rtol=0, atol=1e-12)


def test_mass_moves_to_neighbouring_levels_first(process):
    for step in range(1, 11):
        row = process.Qbar[step][0]
        assert row[1] > row[2] > row[3] > row[4] > 0, f"t={step}: {row.tolist()}"
    # a uniform D3PM step would reach level 3 as easily as level 1
    assert process.Qbar[1][0, 1] > 100 * process.Qbar[1][0, 3]


def test_the_process_ends_at_its_declared_stationary_prior(ordinal):
    proc, _, _ = ordinal
    for T, K in ((40, 5), (100, 2), (7, 12)):
        p = proc.NeighbourProcess(proc.neighbour_schedule(T, K, tol=1e-4), K)
        torch.testing.assert_close(p.stationary, torch.full((K,), 1.0 / K, dtype=torch.float64))
        assert (p.Qbar[T] - p.stationary).abs().max() <= 1e-4, f"T={T}, K={K}: Qbar_T is not near stationary"
        assert (p.Qbar[T // 4] - p.stationary).abs().max() > 1e-2, "the process mixes far too early"
        torch.testing.assert_close(p.stationary @ p.Q[1:], p.stationary.expand(T, K))  # invariant under every step
    x_T = proc.NeighbourProcess(proc.neighbour_schedule(10, 5), 5).prior(5000, generator=torch.Generator().manual_seed(0))
    assert (torch.bincount(x_T, minlength=5).double() / 5000 - 0.2).abs().max() < 0.03  # draws from that prior


@given(K=st.integers(2, 6), data=st.data())
def test_posterior_is_bayes_rule(ordinal, K, data):
    proc, _, _ = ordinal
    T = 12
    p = proc.NeighbourProcess(proc.neighbour_schedule(T, K), K)
    t = data.draw(st.integers(1, T))
    s = data.draw(st.integers(0, t - 1))
    x0, x_t = data.draw(st.integers(0, K - 1)), data.draw(st.integers(0, K - 1))
    k_step = _chain(p.Q, s, t)
    joint = torch.tensor([p.Qbar[s][x0, xs] * k_step[xs, x_t] for xs in range(K)], dtype=torch.float64)  # q(x_s, x_t | x0)
    bayes = joint / p.Qbar[t][x0, x_t]  # q(x_s | x_t, x0) = q(x_s | x0) q(x_t | x_s) / q(x_t | x0)
    one = lambda v: torch.tensor([v])  # noqa: E731
    got = p.posterior_log_probs(one(x_t), one(x0), one(t), one(s)).exp()[0]
    torch.testing.assert_close(got, bayes, rtol=1e-9, atol=1e-12)


def test_reverse_step_is_the_sum_over_x0(ordinal):
    proc, _, _ = ordinal
    K, T, B = 5, 30, 24
    p = proc.NeighbourProcess(proc.neighbour_schedule(T, K), K)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, T + 1, (B,), generator=g)
    s = (torch.rand(B, generator=g) * t).long()
    x_t = torch.randint(0, K, (B,), generator=g)
    logits = 3 * torch.randn(B, K, generator=g)
    got = p.reverse_log_probs(x_t, logits, t, s).exp()
    for b in range(B):
        p0 = torch.softmax(logits[b].double(), 0)
        k_step = _chain(p.Q, int(s[b]), int(t[b]))
        brute = torch.tensor([sum(p0[x0] * p.Qbar[int(s[b])][x0, xs] * k_step[xs, x_t[b]] for x0 in range(K))
                              for xs in range(K)], dtype=torch.float64)
        torch.testing.assert_close(got[b], brute / brute.sum(), rtol=1e-9, atol=1e-12)
    assert torch.isfinite(p.reverse_log_probs(x_t, 1e4 * logits, t, torch.zeros_like(s))).any(dim=1).all()
    # the sampler draws from exactly these probabilities; undo draws from the rows of Q_{s→t}
    n = 20000
    one = lambda v: torch.full((n,), v)  # noqa: E731
    draws = p.reverse_step(one(2), logits[:1].expand(n, K), one(17), one(6), generator=g)
    torch.testing.assert_close(torch.bincount(draws, minlength=K).double() / n,
                               p.reverse_log_probs(one(2)[:1], logits[:1], one(17)[:1], one(6)[:1]).exp()[0],
                               rtol=0, atol=0.015)
    jumps = p.undo(one(0), one(3), one(12), generator=g)
    torch.testing.assert_close(torch.bincount(jumps, minlength=K).double() / n, _chain(p.Q, 3, 12)[0], rtol=0, atol=0.015)


def test_the_ordinal_loss_is_proper_and_distance_aware(ordinal, cdr):
    _, loss, _ = ordinal
    levels = torch.tensor(CDR, dtype=torch.float64)
    point = lambda i: torch.full((1, 5), -30.0).index_fill_(1, torch.tensor([i]), 30.0)  # noqa: E731
    for guess in range(5):  # CRPS of a point prediction is the absolute level distance
        crps = loss.ordinal_crps(point(guess).expand(5, 5), torch.arange(5), levels)
        torch.testing.assert_close(crps, (levels[guess] - levels).abs().float(), rtol=0, atol=1e-5)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # expected loss under the truth is lowest when predicting the truth
        truth = torch.softmax(2 * torch.randn(5, generator=g), 0)
        other = torch.log_softmax(2 * torch.randn(5, generator=g), 0)
        expected = lambda logits: (cdr.loss(logits.expand(5, 5), torch.arange(5)) * truth).sum()  # noqa: E731
        assert expected(truth.log()) < expected(other)


# -- the ordinal variable ------------------------------------------------------------------------------
def test_ordinal_parses_levels_by_value_or_label(cdr):
    assert cdr.parse("0.5") == 0.5 and cdr.parse(" Questionable ") == 0.5 and cdr.parse("2.0000000001") == 2.0
    with pytest.raises(mv.InputError, match=r"cdr: '0\.7' is not a level.*valid levels: 0 \(none\), 0\.5 "
                                            r"\(questionable\), 1 \(mild\), 2 \(moderate\), 3 \(severe\)"):
        cdr.parse("0.7")
    with pytest.raises(mv.InputError, match="did you mean 'mild'"):
        cdr.parse("mld")
    values, present = cdr.values([0.5, None, "severe", float("nan"), 1])
    assert values.tolist()[::2] == [0.5, 3.0, 1.0] and present.tolist() == [True, False, True, False, True]
    with pytest.raises(mv.InputError, match="record 1 is 1.5"):
        cdr.values([0.0, 1.5])
    assert cdr.encode(values).tolist() == [1, 0, 4, 0, 2]
    assert cdr.format(torch.tensor([0.0, 2.0])) == ["none", "moderate"]


@pytest.mark.parametrize(("params", "error"), [
    ({"levels": [0, 1, 1]}, "strictly increasing"),
    ({"levels": [0]}, "at least 2"),
    ({"levels": [0, 1], "labels": ["a"]}, "must name each"),
    ({"levels": [0, 1], "labels": ["1", "2"]}, "numeric label must equal"),
])
def test_ordinal_spec_rejects_bad_scales(registry, params, error):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=error):
        registry.get("ordinal").spec.model_validate({"name": "x", "kind": "ordinal", **params})


def test_ordinal_summaries(cdr):
    samples = torch.tensor([[0.5, 0.5, 1.0, 3.0], [2.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    summary = cdr.summarize(samples)
    assert summary["probs"] == [[0.0, 0.5, 0.25, 0.0, 0.25], [0.5, 0.0, 0.0, 0.5, 0.0]]
    assert summary["majority"] == ["questionable", "none"]
    assert summary["expected"] == pytest.approx([1.25, 1.0], abs=1e-12)


# -- the bounded kind ---------------------------------------------------------------------------------
@given(v=st.floats(0.0, 30.0))
def test_bounded_round_trips_inside_the_range(mmse, v):
    back = float(mmse.decode(mmse.encode(torch.tensor([v]))))
    band = mmse.eps * 30
    expected = 0.0 if v <= band else 30.0 if v >= 30 - band else v
    assert back == pytest.approx(expected, abs=1e-4), f"{v} -> {back}"


@given(z=st.floats(allow_nan=False))
def test_bounded_decode_never_leaves_the_range(mmse, z):
    out = mmse.decode(torch.tensor([[z], [1e3], [-1e3]]))
    assert ((out >= 0) & (out <= 30)).all(), out.tolist()


def test_bounded_exact_bounds_and_bad_values(mmse, registry):
    back = mmse.decode(mmse.encode(torch.tensor([0.0, 30.0, 29.5], dtype=torch.float64)))
    assert back[:2].tolist() == [0.0, 30.0] and back[2].item() == pytest.approx(29.5, abs=1e-5)  # bounds exactly
    for z in mmse.x0_range:  # the band edges, where DDIM clips x0, decode to the bounds themselves
        assert float(mmse.decode(torch.tensor([[z]]))) in (0.0, 30.0)
    assert mmse.parse("30") == 30.0
    for text in ("30.5", "-1", "inf"):
        with pytest.raises(mv.InputError, match=r"mmse: .*\[0, 30\]"):
            mmse.parse(text)
    with pytest.raises(mv.InputError, match=r"record 1 \(31\) is outside the range \[0, 30\]"):
        mmse.values([12.0, 31.0])
    enc = mmse.encode(torch.linspace(0, 30, 301))
    assert 0.5 < float(enc.std()) < 1.5, "z should be O(1) for values spread over the range"
    tiny = registry.get("bounded").spec.model_validate({"name": "x", "kind": "bounded", "range": [0.1, 0.3], "eps": 0.01})
    var = registry.get("bounded").build(tiny, mv.BuildContext(10, {"gaussian": mv.make_schedule("linear", 10)}, 2))
    assert float(var.decode(torch.tensor([[1e3]]))) <= 0.3 and float(var.decode(torch.tensor([[-1e3]]))) >= 0.1


# -- a joint model mixing plugin and built-in kinds ------------------------------------------------------
def test_joint_model_trains_and_samples_with_plugin_kinds(registry):
    from metavoxel.training import fit

    spec = {
        "name": "plugins-2d",
        "variables": [
            {"name": "image", "kind": "image", "channels": 1, "shape": [8, 8]},
            {"name": "cdr", "kind": "ordinal", "levels": CDR, "labels": CDR_LABELS},
            {"name": "mmse", "kind": "bounded", "range": [0, 30]},
            {"name": "age", "kind": "continuous", "range": [40.0, 95.0]},
        ],
        "diffusion": {"timesteps": 100, "sampling_steps": 5, "training": dict(PAPER_TRAINING),  # every loss term live
                      "conditioning": "repaint"},
        "network": dict(TINY_NET_2D),
    }
    model = mv.JointModel(spec, registry=registry)
    g = torch.Generator().manual_seed(0)
    n = 32
    cdr_idx = torch.randint(0, 5, (n,), generator=g)
    mmse = (30 - 5 * cdr_idx + 2 * torch.randn(n, generator=g)).clamp(0, 30).round()  # ceiling 30s included
    data = {"image": torch.rand(n, 1, 8, 8, generator=g), "cdr": torch.tensor(CDR)[cdr_idx], "mmse": mmse,
            "age": 40 + 55 * torch.rand(n, generator=g)}
    history = fit(model, data, steps=20, batch_size=8, seed=0)
    assert len(history) == 20 and all(math.isfinite(x) for x in history)
    losses = model.training_losses({k: v[:8] for k, v in data.items()}, generator=g)
    for name in ("cdr", "mmse"):
        assert losses[f"loss/{name}"].shape == (8,) and torch.isfinite(losses[f"loss/{name}"]).all()
        assert (losses[f"loss/{name}"] > 0).all()

    fixed = model.sample(fix={"cdr": [0.5, 3.0], "mmse": [30.0, 17.5]}, num_samples=3, seed=0)
    assert fixed.samples["cdr"].tolist() == [[0.5] * 3, [3.0] * 3]
    assert fixed.samples["mmse"].tolist() == [[30.0] * 3, [17.5] * 3]
    assert fixed.is_fixed("cdr") and not fixed.is_fixed("age")

    free = model.sample(num_subjects=16, num_samples=2, seed=1)
    levels = set(CDR)
    assert set(free.samples["cdr"].flatten().tolist()) <= levels
    m = free.samples["mmse"]
    assert m.shape == (16, 2) and torch.isfinite(m).all() and ((m >= 0) & (m <= 30)).all()
    summary = free.to_dict()["variables"]
    assert set(summary["cdr"]["summary"]) == {"probs", "majority", "num_samples", "expected"}
    assert set(summary["mmse"]["summary"]) == {"mean", "sd", "lower", "upper", "level", "num_samples"}
    assert summary["mmse"]["summary"]["level"] == [1 / 3] * 16  # two samples: [min, max], a 1/3 interval
