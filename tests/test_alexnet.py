"""AlexNet (§3.5): parameter count, per-layer shapes of every preset, the cross-device copies of
one training step, init, both placements of the columns, old GroupedAlexNet checkpoints, the
one-column form, and a whole-network gradient check."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex.models import (DROPOUT_SITES, PRESETS, AlexNet, OneColumnAlexNet, build_model,
                             count_parameters, describe, get_preset)
from minialex.optim import SGD

TWO_CPUS = ("cpu:0", "cpu:1")


def images_for(model, n, seed=0, dtype=None):
    rng = numpy.random.default_rng(seed)
    s = model.input_size
    return rng.standard_normal((n, 3, s, s)).astype(dtype or model.dtype)


def fixed_masks(preset, n, seed=0):
    rng = numpy.random.default_rng(seed)
    return {site: (rng.random((n, get_preset(preset).fc)) >= 0.5) for site in DROPOUT_SITES}


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_model():
    return AlexNet(1000, "paper", devices=("cpu", "cpu"), seed=0)


def test_paper_preset_has_the_papers_60965224_parameters(paper_model):
    assert count_parameters("paper", 1000) == 60_965_224
    assert paper_model.num_parameters() == 60_965_224
    assert sum(r.params for r in describe("paper", 1000)) == 60_965_224
    # §3.5 per layer (the table in docs/paper.md)
    per_layer = {r.layer: r.params for r in describe("paper", 1000) if r.params}
    assert per_layer == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                         "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312,
                         "fc8": 4_097_000}


def test_paper_preset_maps_are_55_27_13_6_from_227_inputs(paper_model):
    assert paper_model.input_size == 227
    sizes = PRESETS["paper"].spatial_sizes()
    assert (sizes["conv1"], sizes["pool1"], sizes["pool2"], sizes["pool5"]) == (55, 27, 13, 6)
    acts = {}
    with minialex.no_grad():
        logits = paper_model.eval()(images_for(paper_model, 1), activations=acts)
    assert logits.shape == (1, 1000)
    expected = {"conv1": (48, 55, 55), "pool1": (48, 27, 27), "conv2": (128, 27, 27),
                "pool2": (128, 13, 13), "conv3": (192, 13, 13), "conv4": (192, 13, 13),
                "conv5": (128, 13, 13), "pool5": (128, 6, 6), "fc6": (2048,), "fc7": (2048,)}
    for stage, shape in expected.items():
        for col in (0, 1):
            assert acts[f"column{col}.{stage}"].shape == (1,) + shape, stage
    # Figure 2's neuron counts, except the first (253,440 in the caption; 55*55*96 = 290,400)
    neurons = [r.neurons for r in describe("paper") if r.params]
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]


@pytest.mark.parametrize("preset", ["mini", "fashion", "tiny"])
def test_small_presets_per_layer_shapes_match_the_table(preset):
    model = AlexNet(10, preset, devices=TWO_CPUS, seed=0)
    rows = {r.layer.split(",")[-1].strip(): r for r in describe(preset, 10)}
    acts = {}
    logits = model.eval()(images_for(model, 2), activations=acts)
    assert logits.shape == (2, 10) and logits.device == minialex.Device("cpu:0")
    for stage in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5",
                  "fc6", "fc7"):
        for col in (0, 1):
            t = acts[f"column{col}.{stage}"]
            assert t.shape[1:] == rows[stage].output, (preset, stage)
            assert t.device == minialex.Device(TWO_CPUS[col])
    assert model.num_parameters() == count_parameters(preset, 10)
    assert model.num_parameters() == sum(r.params for r in rows.values())
    # every pooling window fits the map exactly, as in the paper (55 -> 27 -> 13 -> 6)
    sizes = get_preset(preset).spatial_sizes()
    for before, after in (("conv1", "pool1"), ("conv2", "pool2"), ("conv5", "pool5")):
        assert (sizes[before] - 3) % 2 == 0, (preset, before)


def test_small_presets_scale_pixels_to_unit_size_before_conv1():
    import dataclasses
    tiny = get_preset("tiny")
    assert tiny.input_scale == 1 / 64 and get_preset("paper").input_scale == 1.0
    unscaled = dataclasses.replace(tiny, input_scale=1.0)
    a = AlexNet(5, tiny, devices=TWO_CPUS, seed=0, dtype=numpy.float64).eval()
    b = AlexNet(5, unscaled, devices=TWO_CPUS, seed=0, dtype=numpy.float64).eval()
    x = images_for(a, 2) * 60
    numpy.testing.assert_allclose(a(x).numpy(), b(x / 64).numpy(), rtol=1e-12)
    assert not numpy.allclose(a(x).numpy(), b(x).numpy())


@pytest.mark.parametrize("build", [
    lambda preset: AlexNet(5, preset, devices=TWO_CPUS, seed=0, dtype=numpy.float64),
    lambda preset: AlexNet(5, preset, devices="cpu", seed=0, dtype=numpy.float64),
    lambda preset: OneColumnAlexNet(5, preset, device="cpu", seed=0, dtype=numpy.float64)],
    ids=["two devices", "columns together", "one column"])
def test_a_grey_preset_is_a_colour_one_with_equal_kernels_on_the_mean(build):
    import dataclasses
    assert get_preset("fashion").grey and not get_preset("mini").grey
    colour = dataclasses.replace(get_preset("tiny"), name="tiny-colour")
    grey = build(dataclasses.replace(colour, grey=True)).eval()
    rgb = build(colour).eval()
    state = grey.state_dict()
    assert all(w.shape[1] == 1 for name, w in state.items() if name.endswith("conv1.weight"))
    # conv1 with the kernel w / 3 on each of R, G and B reads 3 * (w / 3) . mean = w . mean
    rgb.load_state_dict({name: numpy.repeat(w / 3, 3, axis=1) if name.endswith("conv1.weight")
                         else w for name, w in state.items()})
    x = images_for(rgb, 2)
    numpy.testing.assert_allclose(grey(x).numpy(), rgb(x).numpy(), rtol=1e-10, atol=1e-12)
    # ... and it reads all three channels, not only one of them
    changed = x.copy()
    changed[:, 2] += 1
    assert not numpy.allclose(grey(changed).numpy(), grey(x).numpy())
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 33, 33\)"):
        grey(x[:, :1])


def test_wrong_input_shape_and_unknown_preset_raise_clear_errors():
    model = AlexNet(5, "tiny", devices=TWO_CPUS)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 33, 33\), got \(2, 3, 32, 32\)"):
        model(numpy.zeros((2, 3, 32, 32), numpy.float32))
    with pytest.raises(ValueError, match="unknown AlexNet preset 'huge'.*paper, mini, fashion, tiny"):
        AlexNet(5, "huge")
    with pytest.raises(ValueError, match="devices must be a pair"):
        AlexNet(5, "tiny", devices=("cpu:0", "cpu:1", "cpu:2"))


def test_config_rebuilds_the_same_model():
    model = AlexNet(7, "tiny", devices=TWO_CPUS, seed=3, dtype=numpy.float64, init="paper")
    cfg = model.config
    import json
    again = build_model(json.loads(json.dumps(cfg)), devices=TWO_CPUS)
    assert type(again) is AlexNet and again.preset == "tiny" and again.num_classes == 7
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), again.named_parameters()):
        assert n1 == n2 and p1.dtype == p2.dtype and numpy.array_equal(p1.numpy(), p2.numpy())


def test_config_keeps_the_presets_numbers_so_a_retuned_preset_still_loads():
    import dataclasses
    custom = dataclasses.replace(get_preset("tiny"), channels=(2, 4, 4, 4, 2), fc=6)
    model = AlexNet(3, custom, devices=TWO_CPUS, seed=1)
    again = build_model(model.config, devices=TWO_CPUS)
    assert again.preset == "tiny" and again.preset_spec == custom
    assert again.num_parameters() == model.num_parameters() != AlexNet(3, "tiny").num_parameters()


def test_default_devices_follow_the_machine():
    model = AlexNet(5, "tiny")
    assert model.devices == minialex.default_devices()


# --------------------------------------------------------------------------------------------
# The crossings
# --------------------------------------------------------------------------------------------

def test_training_step_crosses_devices_only_at_conv3_fc6_fc7_fc8():
    model = AlexNet(5, "tiny", devices=TWO_CPUS, seed=0)
    opt = SGD(model.named_parameters(), lr=0.01)
    n = 4
    x = minialex.Tensor(images_for(model, n), device="cpu")
    labels = numpy.arange(n) % 5
    with minialex.transfer_log() as log:
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    p = get_preset("tiny")
    sizes = p.spatial_sizes()
    f32 = 4
    image = n * 3 * p.input_size ** 2 * f32
    pool2 = n * p.channels[1] * sizes["pool2"] ** 2 * f32      # conv3's input from one column
    pool5 = n * p.pool5_features * f32                           # fc6's input from one column
    fc = n * p.fc * f32                                          # fc7's and fc8's
    both = [("conv3", pool2), ("fc6", pool5), ("fc7", fc)]
    expected_forward = [("image -> column0", "cpu", "cpu:0", image),
                        ("image -> column1", "cpu", "cpu:1", image)]
    for layer, nbytes in both:
        expected_forward += [(f"{layer} input: column1 -> column0", "cpu:1", "cpu:0", nbytes),
                             (f"{layer} input: column0 -> column1", "cpu:0", "cpu:1", nbytes)]
    expected_forward.append(("fc8 input: column1 -> column0", "cpu:1", "cpu:0", fc))
    # Backward: every crossing of a tensor that needs a gradient, reversed (not the image).
    expected_backward = [(label, dst, src, nbytes) for label, src, dst, nbytes in expected_forward
                         if not label.startswith("image")]

    got_forward = [(t.label, t.source, t.destination, t.nbytes) for t in log if t.direction == "forward"]
    got_backward = [(t.label, t.source, t.destination, t.nbytes) for t in log if t.direction == "backward"]
    assert got_forward == expected_forward          # in the order the forward pass runs
    assert sorted(got_backward) == sorted(expected_backward)
    directions = [t.direction for t in log]
    assert directions == ["forward"] * len(expected_forward) + ["backward"] * len(expected_backward)
    assert log.total_bytes() == sum(e[3] for e in expected_forward + expected_backward)


def test_columns_on_one_device_make_no_copies():
    model = AlexNet(5, "tiny", devices=("cpu", "cpu"), seed=0)
    with minialex.transfer_log() as log:
        F.cross_entropy(model(images_for(model, 2)), numpy.array([0, 1])).backward()
    assert len(log) == 0


def test_to_moves_each_column_to_its_device():
    model = AlexNet(5, "tiny", devices=("cpu", "cpu"), seed=0)
    model.to(TWO_CPUS)
    for name, prm in model.named_parameters():
        want = "cpu:1" if name.startswith("column1") else "cpu:0"
        assert prm.device == minialex.Device(want), name
    assert model(images_for(model, 1)).device == minialex.Device("cpu:0")


# --------------------------------------------------------------------------------------------
# Initialisation and dropout randomness
# --------------------------------------------------------------------------------------------

def test_paper_init_is_std_001_with_biases_one_in_conv2_conv4_conv5_fc6_fc7():
    model = AlexNet(10, "mini", devices=("cpu", "cpu"), seed=0, init="paper")
    for name, prm in model.named_parameters():
        layer = name.split(".")[-2]
        values = prm.numpy()
        if name.endswith("bias"):
            want = 1.0 if layer in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
            assert numpy.all(values == want), name
        elif values.size > 10_000:
            assert abs(values.std() - 0.01) < 0.0005 and abs(values.mean()) < 0.0005, name


def test_he_init_scales_with_fan_in_and_is_the_small_presets_default():
    model = AlexNet(10, "mini", devices=("cpu", "cpu"), seed=0)
    assert model.init == "he"
    w = model.column0.conv3.weight.numpy()
    fan_in = w[0].size
    assert abs(w.std() - numpy.sqrt(2 / fan_in)) < 0.05 * numpy.sqrt(2 / fan_in)
    assert PRESETS["paper"].init == "paper"


def test_same_seed_same_weights_and_dropout_masks_in_every_dtype():
    a = AlexNet(5, "tiny", devices=TWO_CPUS, seed=11)
    # column by column on one device too, so that the float32 sums run in the same order and the
    # logits can be compared bit for bit (the fused path is compared in its own test)
    b = AlexNet(5, "tiny", devices=("cpu", "cpu"), seed=11, fuse_columns=False)
    c = AlexNet(5, "tiny", devices=("cpu", "cpu"), seed=12)
    d = AlexNet(5, "tiny", devices=("cpu", "cpu"), seed=11, dtype=numpy.float64)
    for (na, pa), (_, pb), (_, pc), (_, pd) in zip(a.named_parameters(), b.named_parameters(),
                                                   c.named_parameters(), d.named_parameters()):
        assert numpy.array_equal(pa.numpy(), pb.numpy()), na
        assert numpy.array_equal(pa.numpy(), pd.numpy().astype(numpy.float32)), na
        if na.endswith("weight"):
            assert not numpy.array_equal(pa.numpy(), pc.numpy()), na
    x = images_for(a, 3)
    assert numpy.array_equal(a(x).numpy(), b(x).numpy())        # training mode: same masks
    first, second = b(x).numpy(), b(x).numpy()
    assert not numpy.array_equal(first, second)                  # fresh masks each step


def test_eval_mode_is_deterministic_and_fixed_masks_are_used():
    model = AlexNet(5, "tiny", devices=TWO_CPUS, seed=0)
    x = images_for(model, 3)
    model.eval()
    assert numpy.array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    model.set_dropout_masks(fixed_masks("tiny", 3))
    assert numpy.array_equal(model(x).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match="missing masks"):
        model.set_dropout_masks({"column0.fc6": numpy.ones((3, 8))})


# --------------------------------------------------------------------------------------------
# The grouped single-device form and the one-column net
# --------------------------------------------------------------------------------------------

def test_old_grouped_checkpoints_load_as_alexnet_with_the_same_function_and_momentum():
    """tests/data/grouped_tiny_v1.h5 was written by the GroupedAlexNet class (removed): one SGD step
    taken, then its test-mode logits stored beside it. It loads as AlexNet, converted on read."""
    import os
    from minialex.optim import SGD
    here = os.path.join(os.path.dirname(__file__), "data")
    path = os.path.join(here, "grouped_tiny_v1.h5")
    expected = numpy.load(os.path.join(here, "grouped_tiny_v1_expected.npz"))
    for devices in ("cpu", TWO_CPUS):                    # either placement
        model = minialex.load(path, devices=devices)
        assert type(model) is AlexNet and model.config["class"] == "AlexNet"
        model.eval()
        numpy.testing.assert_allclose(model(expected["images"]).numpy(), expected["logits"],
                                      rtol=1e-12, atol=1e-12)
    opt = SGD(model.named_parameters())
    minialex.load(path, model=model, optimizer=opt)
    assert opt.steps == 1
    v = opt.velocity["column1.conv2.weight"]
    assert v.shape == model.column1.conv2.weight.shape and numpy.abs(v).sum() > 0
    # column 1's half is the second half of the stored grouped tensor
    import h5py
    with h5py.File(path) as f:
        stored = f["optimizer/velocity/conv2/weight"][...]
    numpy.testing.assert_array_equal(v, stored[stored.shape[0] // 2:])


def test_grouped_lrn_stays_within_each_column():
    # A negative control: LRN over all channels at once would mix the columns' edge channels.
    from minialex.models.common import lrn_in_groups
    x = minialex.Tensor(numpy.random.default_rng(0).uniform(1, 30, (2, 8, 3, 3)))
    per_group = lrn_in_groups(x, 2).numpy()
    across = F.local_response_norm(x, 5, 1e-4, 0.75, 2.0)    # the same constants, one group
    left = F.local_response_norm(minialex.Tensor(x.numpy()[:, :4]), 5, 1e-4, 0.75, 2.0).numpy()
    numpy.testing.assert_allclose(per_group[:, :4], left, rtol=1e-12)
    assert not numpy.allclose(across.numpy()[:, :4], left)


def test_one_column_net_follows_section_3_2_footnote():
    model = OneColumnAlexNet(10, "mini", device="cpu", seed=0)
    c = PRESETS["mini"].channels
    assert model.conv1.weight.shape[0] == c[0] and model.conv4.weight.shape[0] == c[3]
    assert model.conv5.weight.shape[0] == 2 * c[4]            # not halved (the footnote)
    assert model.fc6.weight.shape[0] == 2 * PRESETS["mini"].fc
    assert model.conv3.weight.shape[1] == c[1]                # one column: no crossing
    with minialex.transfer_log() as log:
        assert model(images_for(model, 2)).shape == (2, 10)
    assert len(log) == 0
    half = OneColumnAlexNet(10, "mini", device="cpu", halve_all=True)
    assert half.num_parameters() < model.num_parameters() < AlexNet(
        10, "mini", devices=("cpu", "cpu")).num_parameters()
    assert type(build_model(model.config)) is OneColumnAlexNet


# --------------------------------------------------------------------------------------------
# Whole-network gradient check
# --------------------------------------------------------------------------------------------

def _loss_of_parameters(model, labels):
    """fn(x, *params) -> loss, with the model's parameters replaced by the given tensors."""
    slots = []
    for name, _ in model.named_parameters():
        *path, leaf = name.split(".")
        module = model
        for part in path:
            module = getattr(module, part)
        slots.append((module, leaf))

    def fn(x, *params):
        saved = [module._parameters[leaf] for module, leaf in slots]
        try:
            for (module, leaf), p in zip(slots, params):
                module._parameters[leaf] = p
            return F.cross_entropy(model(x), labels)
        finally:
            for (module, leaf), p in zip(slots, saved):
                module._parameters[leaf] = p
    return fn


def test_whole_network_gradcheck_tiny_two_columns_float64():
    model = AlexNet(5, "tiny", devices=TWO_CPUS, seed=2, dtype=numpy.float64)
    n = 3
    model.set_dropout_masks(fixed_masks("tiny", n, seed=5))
    labels = numpy.array([1, 4, 0])
    fn = _loss_of_parameters(model, labels)
    x = minialex.Tensor(images_for(model, n), device="cpu")
    params = [minialex.Tensor(p.data.copy(), device=p.device) for _, p in model.named_parameters()]
    report = minialex.gradcheck(fn, [x] + params, mode="direction", directions=4, rtol=1e-6,
                                name="AlexNet tiny")
    assert report.passed
    # And per parameter, the weights on both sides of a crossing.
    names = [name for name, _ in model.named_parameters()]
    for name in ("column1.conv1.weight", "column0.conv3.weight", "column1.fc6.weight", "fc8.bias"):
        i = names.index(name) + 1
        minialex.gradcheck(fn, [x] + params, mode="direction", directions=2, wrt=[i],
                           rtol=1e-6, name=name)


def test_gradcheck_fails_when_dropout_masks_change_between_evaluations():
    # Negative control: with fresh random masks the function is not the same on every call,
    # so the check must fail; this proves the check above can fail at all.
    model = AlexNet(5, "tiny", devices=TWO_CPUS, seed=2, dtype=numpy.float64)
    fn = _loss_of_parameters(model, numpy.array([1, 4, 0]))
    x = minialex.Tensor(images_for(model, 3), device="cpu")
    params = [minialex.Tensor(p.data.copy(), device=p.device) for _, p in model.named_parameters()]
    report = minialex.gradcheck(fn, [x] + params, mode="direction", directions=2, rtol=1e-6,
                                raise_on_failure=False)
    assert not report.passed


def test_columns_together_equal_column_by_column():
    """On one device the columns run together (placement.py); in float64 the logits, every stage's
    activations and every parameter's gradient equal the column-by-column placement's, dropout
    included (same generators)."""
    import minialex.functional as F
    from minialex.models import AlexNet

    rng = numpy.random.default_rng(5)
    results = []
    for fuse in (True, False):
        model = AlexNet(num_classes=7, preset="tiny", devices=("cpu", "cpu"), seed=11,
                        dtype=numpy.float64, fuse_columns=fuse)
        x = numpy.random.default_rng(1).standard_normal((3, 3, model.input_size, model.input_size))
        labels = numpy.array([0, 3, 6])
        acts = {}
        logits = model(minialex.Tensor(x), activations=acts)
        assert type(model.placement()).__name__ == ("ColumnsTogether" if fuse else "ColumnByColumn")
        F.cross_entropy(logits, labels).backward()
        results.append((logits.numpy(), {n: p.grad.copy() for n, p in model.named_parameters()},
                        {k: a.numpy() for k, a in acts.items()}))
    (l_fused, g_fused, a_fused), (l_cols, g_cols, a_cols) = results
    assert set(a_fused) == set(a_cols) and len(a_cols) == 21
    for name in a_cols:
        numpy.testing.assert_allclose(a_fused[name], a_cols[name], rtol=1e-12, atol=1e-12,
                                      err_msg=name)
    numpy.testing.assert_allclose(l_fused, l_cols, rtol=1e-12, atol=1e-12)
    assert set(g_fused) == set(g_cols)
    for name in g_cols:
        numpy.testing.assert_allclose(g_fused[name], g_cols[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert rng is not None


# --------------------------------------------------------------------------------------------
# Every backend (NumPy here; CuPy on a GPU machine)
# --------------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_network_and_gradients_on_every_backend(device):
    cpu = AlexNet(5, "tiny", devices=TWO_CPUS, seed=6, dtype=numpy.float64)
    other = AlexNet(5, "tiny", devices=(device, device), seed=6, dtype=numpy.float64)
    for (name, a), (_, b) in zip(cpu.named_parameters(), other.named_parameters()):
        assert b.device == device and numpy.array_equal(a.numpy(), b.numpy()), name
    masks = fixed_masks("tiny", 2, seed=3)
    cpu.set_dropout_masks(masks)
    other.set_dropout_masks(masks)
    x = images_for(cpu, 2)
    labels = numpy.array([1, 2])
    loss_cpu = F.cross_entropy(cpu(x), labels)
    loss_other = F.cross_entropy(other(minialex.Tensor(x, device=device)), device.put(labels))
    numpy.testing.assert_allclose(loss_other.item(), loss_cpu.item(), rtol=1e-10)
    loss_cpu.backward()
    loss_other.backward()
    for (name, a), (_, b) in zip(cpu.named_parameters(), other.named_parameters()):
        numpy.testing.assert_allclose(minialex.as_numpy(b.grad), a.grad, rtol=1e-8, atol=1e-12,
                                      err_msg=name)
