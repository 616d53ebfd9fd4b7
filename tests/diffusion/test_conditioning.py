"""Per-variable training levels, keep-mask channels, clean conditioning, guidance and point predictions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.diffusion.conditioning import ConditioningFallback, Conditions, call_network
from metavoxel.diffusion.mixture import LevelMixture, draw_levels, keep_mask
from metavoxel.diffusion.options import SamplingOptions
from metavoxel.diffusion.sampling import sample
from metavoxel.errors import InputError, SpecError
from metavoxel.presets import PAPER_TRAINING, RECOMMENDED_TRAINING
from metavoxel.spec import ModelSpec

MIXTURE = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.25}
GROUPS = [["image"], ["age"], ["group"]]
T = 100


def mixture_spec(**training) -> dict:
    return tiny_spec_2d(diffusion={"timesteps": T, "sampling_steps": 5, "training": {**MIXTURE, **training}})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = mv.JointModel(mixture_spec())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero outputs everywhere (the U-Net's output convs start at zero)
        for p in m.net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return m


def paper_spec() -> dict:
    return tiny_spec_2d(diffusion={"timesteps": T, "sampling_steps": 5, "training": dict(PAPER_TRAINING),
                                   "conditioning": "repaint"})


@pytest.fixture(scope="module")
def paper_model():
    return mv.JointModel(paper_spec())


# -- the mixture ------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.floats(0, 1), min_size=4, max_size=4).filter(lambda w: sum(w) > 0.1),
       seed=st.integers(0, 2**31 - 1))
def test_every_record_follows_its_recipe(weights, seed):
    mixture = LevelMixture(*weights)
    component, levels = draw_levels(GROUPS, 64, T, mixture, torch.Generator().manual_seed(seed), torch.device("cpu"))
    lv = torch.stack([levels[g[0]] for g in GROUPS], dim=1)  # (B, G)
    assert ((lv >= 0) & (lv <= T)).all()
    assert (torch.tensor(weights)[component] > 0).all()  # a zero-weight recipe is never drawn
    for row, c in zip(lv, component.tolist()):
        if c == 0:  # shared: one t >= 1
            assert (row == row[0]).all() and row[0] >= 1
        elif c == 1:  # clean: a non-empty proper subset at 0, the rest at one t >= 1
            clean = row == 0
            assert 0 < int(clean.sum()) < len(GROUPS) and len(set(row[~clean].tolist())) == 1
        elif c == 2:
            assert (row >= 1).all()
        else:  # prior: a non-empty proper subset at T, the rest all clean or all at one t
            rest = row[row != T]
            assert 0 < int((row == T).sum()) < len(GROUPS) or len(set(row.tolist())) == 1
            assert len(set(rest.tolist())) <= 1


def test_recipes_are_drawn_in_proportion_and_clean_targets_often_sit_at_T():
    mixture = LevelMixture(**{k: v for k, v in MIXTURE.items()})
    component, levels = draw_levels(GROUPS, 20000, T, mixture, torch.Generator().manual_seed(1), torch.device("cpu"))
    freq = torch.bincount(component, minlength=4).double() / 20000
    want = torch.tensor([0.5, 0.25, 0.1, 0.15], dtype=torch.float64)
    assert (freq - want).abs().max() < 0.015, freq.tolist()
    lv = torch.stack([levels[g[0]] for g in GROUPS], dim=1)[component == 1]
    noised = lv.max(dim=1).values
    assert 0.18 < float((noised == T).double().mean()) < 0.26  # 20% + the 1/T of U[1, T]


def test_keep_masks_are_binary_non_empty_and_not_full():
    m = keep_mask(64, (8, 8), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert m.shape == (64, 1, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
    kept = m.flatten(1).sum(1)
    assert (kept > 0).all() and (kept < 64).all()


def test_corrupted_records_carry_levels_keep_channels_and_skip_the_loss_of_clean_variables(model):
    batch = {"image": torch.rand(64, 1, 8, 8), "age": torch.linspace(40, 90, 64), "group": [0, 1, 2, 0] * 16}
    z0, present = model.encode_batch(batch)
    c = model.corrupt(z0, present, generator=torch.Generator().manual_seed(0))
    assert set(c.levels) == {"image", "age", "group"} and c.keep["image"].shape == (64, 2, 8, 8)
    clean_age = c.levels["age"] == 0
    assert clean_age.any() and torch.equal(c.z_t["age"][clean_age], z0["age"][clean_age])  # level 0 is z0 exactly
    losses = model.loss(c)
    assert (losses["loss/age"][clean_age] == 0).all()
    part = c.rows(slice(0, 5))
    assert part.levels["age"].shape == (5,) and part.keep["image"].shape == (5, 2, 8, 8)
    kept = c.keep["image"][:, 0].flatten(1).any(1)
    assert kept.any() and (c.levels["image"][kept] > 0).all()  # only noised images get a keep-mask


def test_missing_values_sit_at_T_outside_the_paper_recipe(model):
    z0, present = model.encode_batch({"image": torch.rand(8, 1, 8, 8), "age": [float("nan")] * 8})
    c = model.corrupt(z0, present, generator=torch.Generator().manual_seed(0))
    assert (c.levels["age"] == T).all() and (c.levels["group"] == T).all()


def test_mask_channels_exist_only_with_keep_masks():
    with_masks = mv.JointModel(mixture_spec()).net.unet.in_channels
    without = mv.JointModel(mixture_spec(keep_masks=0.0)).net.unet.in_channels
    paper = mv.JointModel(paper_spec()).net.unet.in_channels
    assert without == paper and with_masks == paper + 2  # [mask, mask * z0] for the 1-channel image


def test_training_spec_refuses_bad_weights():
    with pytest.raises(SpecError, match="must not all be 0"):
        ModelSpec.from_dict(tiny_spec_2d(diffusion={"training": {"shared": 0, "clean": 0, "independent": 0, "prior": 0}}))
    with pytest.raises(SpecError, match="greater than or equal to 0"):
        ModelSpec.from_dict(tiny_spec_2d(diffusion={"training": {"clean": -1}}))
    with pytest.raises(SpecError, match="needs a model trained with clean subsets"):
        ModelSpec.from_dict(tiny_spec_2d(diffusion={"conditioning": "clean", "training": dict(PAPER_TRAINING)}))


def test_conditioning_is_clean_by_default_whatever_the_training_and_a_paper_recipe_names_repaint():
    plain = ModelSpec.from_dict(tiny_spec_2d(diffusion={"timesteps": T}))  # no recipe, no conditioning given
    assert plain.diffusion.training.model_dump() == RECOMMENDED_TRAINING and plain.diffusion.conditioning == "clean"
    assert ModelSpec.from_dict(paper_spec()).diffusion.conditioning == "repaint"  # named by the spec
    assert mv.JointModel(mixture_spec()).diffusion.conditioning == "clean"
    assert RECOMMENDED_TRAINING == MIXTURE
    with pytest.raises(SpecError) as err:  # the paper's training alone: the default is not quietly changed
        ModelSpec.from_dict(tiny_spec_2d(diffusion={"timesteps": T, "training": dict(PAPER_TRAINING)}))
    assert "conditioning 'clean' (the default) needs a model trained with clean subsets" in str(err.value)
    assert "set conditioning: repaint" in str(err.value) and "\n" not in str(err.value)


def test_two_images_sample_freely_in_clean_mode_and_translation_falls_back_to_repaint_by_default():
    """Two image variables share one level: clean mode samples both free or both fixed; fixing one (translation)
    uses repaint when the mode is the spec's default, and is refused when clean is asked for by name."""
    spec = mixture_spec()
    spec["variables"] = [*spec["variables"], {"name": "flair", "kind": "image", "channels": 1, "shape": [8, 8]}]
    torch.manual_seed(0)
    model = mv.JointModel(spec)
    free = model.sample(num_subjects=2, seed=0)
    assert free.conditioning == "clean" and free.to_dict()["conditioning"] == "clean"
    with pytest.warns(ConditioningFallback, match="default conditioning, clean, cannot hold.*sampled with repaint"):
        translated = model.sample(fix={"image": torch.rand(2, 1, 8, 8)}, seed=0)
    assert translated.conditioning == "repaint" and translated.samples["flair"].shape == (2, 1, 1, 8, 8)
    with pytest.raises(InputError, match="share one level"):
        model.sample(fix={"image": torch.rand(2, 1, 8, 8)}, conditioning="clean")


def two_image_spec() -> dict:
    spec = mixture_spec()
    spec["variables"] = [*spec["variables"], {"name": "flair", "kind": "image", "channels": 1, "shape": [8, 8]}]
    return spec


@pytest.fixture(scope="module")
def two_images():
    torch.manual_seed(0)
    return mv.JointModel(two_image_spec())


def test_a_missing_image_beside_a_present_one_keeps_the_shared_level(two_images):
    """The images share one level: a missing one beside a present one is prior noise at that level, not at T
    (which the network cannot be given); with every image missing the group sits at T."""
    image = torch.rand(3, 1, 8, 8)
    flair = [torch.rand(1, 8, 8), None, None]
    z0, present = two_images.encode_batch({"image": [image[0], image[1], None], "flair": flair, "age": [50.0] * 3})
    for t in (None, torch.full((3,), 30)):
        c = two_images.corrupt(z0, present, t=t, generator=torch.Generator().manual_seed(0))
        assert torch.equal(c.levels["image"], c.levels["flair"])
        assert c.levels["flair"][2] == T and (t is None or c.levels["flair"][1] == 30)
        two_images.diffusion.loss(two_images.net, c)  # the network takes the levels (it refuses unequal image levels)
    losses = two_images.training_losses({"image": [image[0], image[1], None], "flair": flair, "age": [50.0] * 3},
                                        generator=torch.Generator().manual_seed(1))
    assert losses["loss/flair"][1:].eq(0).all()  # a missing image is masked from the loss


# -- sampling -----------------------------------------------------------------------------------------
class Recorder:
    """Wraps a network; records each call's levels and row count."""

    def __init__(self, net):
        self.net, self.calls = net, []

    def __call__(self, z, t, keep=None):
        self.calls.append((t, len(next(iter(z.values()))), keep))
        return self.net(z, t, keep) if keep else self.net(z, t)


def test_clean_conditioning_holds_fixed_values_at_level_0_and_never_renoises_them(model, monkeypatch):
    renoised = []
    for name in ("age", "group"):
        original = model.variables[name].renoise
        monkeypatch.setattr(model.variables[name], "renoise",
                            lambda *a, _n=name, _o=original, **k: renoised.append(_n) or _o(*a, **k))
    net = Recorder(model.net)
    ages, groups = [45.0, 80.0, float("nan")], ["A", "C", "B"]
    result = sample(model.diffusion, net, {"age": ages, "group": groups}, options=SamplingOptions(num_samples=2, conditioning="clean"))
    assert renoised == []
    assert result.samples["age"][:2].tolist() == [[45.0, 45.0], [80.0, 80.0]]
    assert result.samples["group"].tolist() == [[0, 0], [2, 2], [1, 1]]
    for levels, rows, _ in net.calls:
        assert rows == 6
        assert (levels["age"][:4] == 0).all() and (levels["age"][4:] > 0).all()  # subject 3's age is free
        assert (levels["group"] == 0).all() and (levels["image"] > 0).all()


def test_clean_inpainting_conditions_through_the_mask_channels_and_pastes_the_known_voxels(model):
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1
    net = Recorder(model.net)
    result = sample(model.diffusion, net, {"image": image}, {"image": mask}, SamplingOptions(conditioning="clean"))
    assert torch.equal(result.samples["image"][:, 0, :, :, :4], image[..., :4])
    keep = net.calls[0][2]["image"]  # (B, 2, 8, 8): [mask, mask * z0]
    assert torch.equal(keep[:, 0], mask.expand(2, 8, 8)) and torch.equal(keep[:, 1, :, 4:], torch.zeros(2, 8, 4))


def test_clean_inpainting_shows_the_kept_voxels_noised_from_z0_as_training_does(model):
    """Training draws a kept voxel's z_t from its z0 (beside the clean keep channels); sampling must too."""
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    seen = []

    def net(z, t, keep=None):
        seen.append((z["image"].clone(), t["image"] if isinstance(t, dict) else t))
        return model.net(z, t, keep) if keep else model.net(z, t)

    sample(model.diffusion, net, {"image": image}, {"image": mask}, SamplingOptions(conditioning="clean"))
    var = model.variables["image"]
    z0 = var.encode(image)
    kept = var.diffusion_mask(mask.expand(2, 1, 8, 8)).expand_as(z0)
    abar = var.process.abar.float()
    for z, t in seen[:len(seen) // 2]:  # the joint chain; the imputation's second holds the completion whole
        a = abar[t].reshape(-1, 1, 1, 1)
        noise = ((z - a.sqrt() * z0) / (1 - a).sqrt())[kept]  # the noise q(z_t | z0) added to a kept voxel
        assert 0.6 < float(noise.std()) < 1.5 and abs(float(noise.mean())) < 0.5, int(t[0])


def test_imputation_samples_the_answer_given_the_returned_completion_held_whole(model):
    """impute (the default): the joint chain completes the image (the same completion as without imputation), then a
    second chain samples the free variables with that completion held clean, whole, and without keep channels."""
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    seen = []

    def net(z, t, keep=None):
        seen.append((z["image"].clone(), t, keep))
        return model.net(z, t, keep) if keep else model.net(z, t)

    fix, masks = {"image": image, "group": ["A", "B"]}, {"image": mask}
    imputed = sample(model.diffusion, net, fix, masks, SamplingOptions(num_samples=2, seeds=[1, 2]))
    first = len(seen) // 2
    joint = sample(model.diffusion, model.net, fix, masks, SamplingOptions(num_samples=2, seeds=[1, 2], impute=False))
    assert len(seen) == 2 * model.diffusion.sampling_steps and first == model.diffusion.sampling_steps
    assert torch.equal(imputed.samples["image"], joint.samples["image"])  # the completion it returns
    assert not torch.equal(imputed.samples["age"], joint.samples["age"])  # the answer drawn again, given it
    completion = model.variables["image"].encode(imputed.samples["image"].reshape(4, 1, 8, 8))
    for z, t, keep in seen[first:]:
        assert torch.equal(t["image"], torch.zeros(4, dtype=torch.long)) and t["group"].eq(0).all() and not keep
        assert torch.allclose(z, completion, atol=1e-5)  # held whole at level 0
    assert all(keep for _, _, keep in seen[:first])
    seen.clear()
    sample(model.diffusion, net, {"image": image, "age": [50.0, 60.0], "group": ["A", "B"]}, masks, SamplingOptions())
    assert len(seen) == model.diffusion.sampling_steps  # nothing free beside the image: one chain


def test_nan_outside_the_mask_is_not_a_missing_image_and_masks_that_keep_nothing_or_all_say_so(model):
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[..., :4] = True
    background = image.clone()
    background[..., 6:] = float("nan")  # e.g. a scan's background, outside the kept half
    result = model.sample(fix={"image": background}, masks={"image": half}, seed=0)
    assert torch.equal(result.samples["image"][:, 0, ..., :4], image[..., :4])
    assert not result.samples["image"].isnan().any()
    with pytest.raises(InputError, match="the mask for 'image' keeps no voxel"):
        model.sample(fix={"image": image}, masks={"image": torch.zeros(1, 8, 8)})
    with pytest.raises(InputError, match="the mask for 'image' keeps every voxel"):
        model.sample(fix={"image": image, "age": [50.0], "group": ["A"]}, masks={"image": torch.ones(1, 8, 8)})


@pytest.mark.parametrize("first", ["whole", "missing"])
def test_a_subjects_clean_samples_do_not_depend_on_a_partly_known_neighbour(model, first):
    """Per-subject seeds: subject 0 (image whole, or missing) samples alike beside subject 1 (half known) and alone."""
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    mask[1, ..., 4:] = False
    images = [image[0] if first == "whole" else None, image[1]]
    fix = {"image": images, "age": [float("nan")] * 2}
    together = model.sample(fix=fix, masks={"image": mask}, conditioning="clean", seeds=[7, 8])
    one_by_one = model.sample(fix=fix, masks={"image": mask}, conditioning="clean", seeds=[7, 8], batch_size=1)
    alone = model.sample(fix={"image": images[:1], "age": [float("nan")]}, masks={"image": mask[:1]},
                         conditioning="clean", seeds=[7])
    for name in ("image", "age"):
        torch.testing.assert_close(together.samples[name][:1], alone.samples[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(one_by_one.samples[name][:1], alone.samples[name], atol=1e-5, rtol=0)


def test_repaint_is_unchanged_by_the_new_options(model):
    a = sample(model.diffusion, model.net, {"age": [50.0]}, options=SamplingOptions(num_samples=2, seed=3, conditioning="repaint"))
    b = model.sample(fix={"age": [50.0]}, num_samples=2, seed=3, conditioning="repaint", guidance=0.0)
    assert torch.equal(a.samples["image"], b.samples["image"])


def test_guidance_zero_equals_no_guidance_and_w_combines_the_two_calls(model):
    fix = {"age": [50.0, 70.0]}
    plain = model.sample(fix=fix, seed=1, conditioning="clean")
    zero = model.sample(fix=fix, seed=1, conditioning="clean", guidance=0.0)
    assert torch.equal(plain.samples["image"], zero.samples["image"])
    known, _ = mv.diffusion.known.known_values(model.variables, fix, {}, None, torch.device("cpu"))
    cond = Conditions(model.variables, known, "clean", T, 2)
    z = {n: v.prior(2, generator=torch.Generator().manual_seed(0), device="cpu") for n, v in model.variables.items()}
    z = cond.hold(z)
    t = torch.full((2,), 40)
    prior = {"age": torch.randn(2, 1)}
    net = Recorder(model.net)
    with torch.no_grad():
        guided = call_network(net, cond, z, t, guidance=2.0, prior=prior)
        c = model.net(z, cond.levels(t))
        m = model.net(*cond.marginal(z, t, prior))
    assert len(net.calls) == 1 and net.calls[0][1] == 4  # both halves in one forward
    assert (net.calls[0][0]["age"][2:] == T).all()
    for name in guided:
        torch.testing.assert_close(guided[name], 3.0 * c[name] - 2.0 * m[name], rtol=1e-4, atol=1e-5)


def test_guidance_with_one_of_two_images_fixed_shows_the_fixed_image_unknown_at_the_shared_level(two_images):
    """Translation with guidance: the marginal half cannot put the fixed image at T while the other image is
    at t; it gets prior noise at the shared level instead, and the fixed scalar goes to T as usual."""
    net = Recorder(two_images.net)
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(ConditioningFallback):
        result = sample(two_images.diffusion, net, {"image": image, "age": [50.0, 70.0]},
                        options=SamplingOptions(guidance=1.5, seed=0))
    assert result.conditioning == "repaint" and torch.isfinite(result.samples["flair"]).all()
    for levels, rows, _ in net.calls:
        assert rows == 4 and torch.equal(levels["image"], levels["flair"])
        assert (levels["age"][2:] == T).all() and (levels["age"][:2] == levels["image"][:2]).all()
    known, _ = mv.diffusion.known.known_values(two_images.variables, {"image": image}, {}, None, torch.device("cpu"))
    cond = Conditions(two_images.variables, known, "repaint", T, 2)
    gen = torch.Generator().manual_seed(0)
    z = {n: v.prior(2, generator=gen, device="cpu") for n, v in two_images.variables.items()}
    prior = {"image": torch.randn(2, 1, 8, 8)}
    z_m, levels = cond.marginal(z, torch.full((2,), 40), prior)
    assert torch.equal(z_m["image"], prior["image"]) and (levels["image"] == 40).all()
    both = Conditions(two_images.variables, known | known_values_flair(two_images), "repaint", T, 2)
    z_m, levels = both.marginal(z, torch.full((2,), 40), prior | {"flair": torch.randn(2, 1, 8, 8)})
    assert (levels["image"] == T).all() and (levels["flair"] == T).all()  # every image held: both at T


def test_clean_refusals_state_the_real_reason_and_point_prediction_offers_what_it_can_do(two_images):
    image, flair = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    half = (torch.arange(8) < 4).float().expand(1, 8, 8)
    with pytest.raises(InputError) as both_fixed:  # both images ARE fixed: the mask is the reason
        two_images.sample(fix={"image": image, "flair": flair}, masks={"image": half}, conditioning="clean")
    message = str(both_fixed.value)
    assert "image is fixed inside a mask" in message and "flair is held whole" in message
    assert "set conditioning to repaint, or fix flair inside a mask too" in message
    assert both_fixed.value.render({"conditioning": "--conditioning"}).endswith(
        "set --conditioning to repaint, or fix flair inside a mask too")  # the CLI's spelling
    with pytest.raises(InputError, match="flair is free; set conditioning to repaint, or fix every image"):
        two_images.sample(fix={"image": image}, conditioning="clean")
    for fix, masks in (({"image": image}, {}), ({"image": image, "flair": flair}, {"image": half})):
        with pytest.raises(InputError) as point:
            two_images.point_predict(fix, "age", masks=masks)
        assert "predict by sampling instead (method sample)" in str(point.value)
        assert "repaint" not in str(point.value) and "\n" not in str(point.value)
    no_masks = mv.JointModel(mixture_spec(keep_masks=0.0))
    with pytest.raises(InputError, match="keep_masks > 0.*sampling instead \\(method sample\\) or retrain$"):
        no_masks.point_predict({"image": image}, "age", masks={"image": half})


def known_values_flair(model):
    known, _ = mv.diffusion.known.known_values(model.variables, {"flair": torch.rand(2, 1, 8, 8)}, {}, None,
                                               torch.device("cpu"))
    return known


def test_refusals_name_the_reason(model, paper_model):
    with pytest.raises(InputError, match="clean subsets.*set conditioning to repaint"):
        paper_model.sample(fix={"age": [50.0]}, conditioning="clean")
    with pytest.raises(InputError, match="prior subsets.*set guidance to 0"):
        paper_model.sample(fix={"age": [50.0]}, guidance=1.0)
    with pytest.raises(InputError, match="point prediction needs a model trained with clean subsets"):
        paper_model.point_predict({"age": [50.0]})
    with pytest.raises(InputError, match="conditioning must be one of"):
        model.sample(fix={"age": [50.0]}, conditioning="paste")
    no_masks = mv.JointModel(mixture_spec(keep_masks=0.0))
    with pytest.raises(InputError, match="partly known.*keep_masks > 0"):
        half = (torch.arange(8) < 4).float().expand(1, 8, 8)
        no_masks.sample(fix={"image": torch.rand(1, 1, 8, 8)}, masks={"image": half}, conditioning="clean")
    for line in ("clean", "guidance"):
        try:
            paper_model.sample(fix={"age": [50.0]}, **({"conditioning": "clean"} if line == "clean" else {"guidance": 1}))
        except InputError as err:
            assert "\n" not in str(err)
