"""Leaving out one of the paper's tricks (``without=``, ``train --without``), as the ablation
benchmark does: each switch changes exactly its own stage, both placements still compute the same
function, the whole network still passes a float64 gradient check, and a run keeps its choice in
its checkpoint."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex.data.loader import DataLoader
from minialex.models import AlexNet, OneColumnAlexNet, build_model
from minialex.models.common import MODEL_TRICKS, WITHOUT, check_without
from minialex.train import TrainConfig, TrainingError, train

from test_alexnet import _loss_of_parameters, images_for


def _stages(without, fuse=True, train_mode=False, seed=3):
    model = AlexNet(6, "tiny", devices=("cpu", "cpu"), seed=seed, dtype=numpy.float64,
                    fuse_columns=fuse, without=without)
    model.train(train_mode)
    acts = {}
    logits = model(minialex.Tensor(images_for(model, 2)), activations=acts)
    return model, logits, acts


def test_unknown_trick_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown trick\(s\) 'batchnorm'; choose from relu, lrn"):
        AlexNet(5, "tiny", without=("batchnorm",))
    assert check_without(["lrn", "relu", "lrn"]) == ("lrn", "relu")
    assert set(MODEL_TRICKS) < set(WITHOUT)


@pytest.mark.parametrize("trick", MODEL_TRICKS)
def test_each_trick_changes_its_own_stage_and_both_placements_agree(trick):
    full = _stages(())[2]
    model, logits, acts = _stages((trick,))
    conv1 = F.conv2d(images_for(model, 2) * model.preset_spec.input_scale,
                     minialex.concat([model.column0.conv1.weight, model.column1.conv1.weight], 0),
                     minialex.concat([model.column0.conv1.bias, model.column1.conv1.bias], 0),
                     stride=model.preset_spec.conv1_stride).numpy()
    got = numpy.concatenate([acts["column0.conv1"].numpy(), acts["column1.conv1"].numpy()], 1)
    numpy.testing.assert_allclose(got, numpy.tanh(conv1) if trick == "relu" else
                                  numpy.maximum(conv1, 0), rtol=1e-12, atol=1e-12)
    if trick in ("lrn", "overlap"):
        c1 = acts["column0.conv1"]
        expected = (F.max_pool2d(c1, 3, 2) if trick == "lrn" else   # no LRN before pool1
                    F.max_pool2d(F.local_response_norm(c1, 5, 1e-4, 0.75, 2.0), 2, 2))
        numpy.testing.assert_allclose(acts["column0.pool1"].numpy(), expected.numpy(), rtol=1e-12)
    changed = [k for k in full if not numpy.allclose(full[k].numpy(), acts[k].numpy())]
    first = {"relu": "column0.conv1", "lrn": "column0.pool1", "overlap": "column0.pool1",
             "dropout": "fc8"}[trick]
    assert first in changed and ("column0.conv1" not in changed or trick == "relu")
    # The same function column by column, in training mode (dropout drawn from the same seeds).
    _, a, _ = _stages((trick,), fuse=True, train_mode=True)
    _, b, _ = _stages((trick,), fuse=False, train_mode=True)
    numpy.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


def test_without_dropout_training_and_test_mode_are_the_same_function():
    _, train_logits, _ = _stages(("dropout",), train_mode=True)
    _, test_logits, _ = _stages(("dropout",), train_mode=False)
    numpy.testing.assert_allclose(train_logits.numpy(), test_logits.numpy(), rtol=1e-12)
    _, with_dropout, _ = _stages((), train_mode=True)
    assert not numpy.allclose(with_dropout.numpy(), test_logits.numpy())


def test_whole_network_gradcheck_without_every_model_trick_float64():
    model = AlexNet(5, "tiny", devices=("cpu:0", "cpu:1"), seed=2, dtype=numpy.float64,
                    without=MODEL_TRICKS)
    fn = _loss_of_parameters(model, numpy.array([1, 4, 0]))
    x = minialex.Tensor(images_for(model, 3), device="cpu")
    params = [minialex.Tensor(p.data.copy(), device=p.device) for _, p in model.named_parameters()]
    assert minialex.gradcheck(fn, [x] + params, mode="direction", directions=4, rtol=1e-6,
                              name="AlexNet tiny without every trick").passed


def test_one_column_net_takes_the_same_switches_and_configs_keep_them():
    model = OneColumnAlexNet(4, "tiny", device="cpu", seed=1, without=("lrn", "relu"))
    acts = {}
    model(images_for(model, 2), activations=acts)
    assert numpy.all(numpy.abs(acts["conv1"].numpy()) < 1) and (acts["conv1"].numpy() < 0).any()
    for m in (model, AlexNet(4, "tiny", devices=("cpu", "cpu"), without=("overlap",))):
        again = build_model(m.config)
        assert type(again) is type(m) and again.without == m.without


def test_a_run_without_tricks_keeps_them_and_resume_refuses_others(tmp_path, monkeypatch):
    seen = []
    init = DataLoader.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.append((self.train, self.augment))
    monkeypatch.setattr(DataLoader, "__init__", spy)
    lines = []
    out = str(tmp_path / "run")
    small = dict(preset="tiny", train_images=64, val_images=32, batch_size=32, progress=False)
    train(TrainConfig(epochs=1, out=out, without=("columns", "augmentation", "lrn"), **small),
          echo=lines.append)
    assert (True, False) in seen           # the training batches: centre crops, no flips
    assert any(line.startswith("without columns: one column") for line in lines)
    model = minialex.load(out + "/best.h5")
    assert type(model) is OneColumnAlexNet and model.without == ("lrn",)
    with pytest.raises(TrainingError, match="trained with --without"):
        train(TrainConfig(epochs=2, resume=out, without=("lrn",), progress=False), echo=lines.append)
    result = train(TrainConfig(epochs=2, resume=out, progress=False), echo=lines.append)
    assert result.epochs_done == 2 and type(minialex.load(out + "/last.h5")) is OneColumnAlexNet
