"""``export``: a checkpoint as an ONNX graph (export_onnx.py), run in onnxruntime against
minialex's own test-mode forward pass."""

import json
import sys

import numpy
import pytest
from click.testing import CliRunner

import minialex
from minialex.autograd import no_grad
from minialex.tools.cli import main
from minialex.models import AlexNet, OneColumnAlexNet

onnx = pytest.importorskip("onnx")
from minialex.tools.export_onnx import build_graph, parameter_count  # noqa: E402

MEAN = numpy.array([0.45, 0.5, 0.55])


def runtime(proto):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits", "probabilities"], {"image": x})


def pixels(model, n=5, seed=0):
    """Images as the graph reads them: RGB 0-255 (here the built-in set's, centre crops)."""
    from minialex.data import open_dataset
    from minialex.data.transforms import center_crop
    ds = open_dataset("builtin", "val", num_val=n, base_size=model.input_size + 7)
    crops = numpy.stack([center_crop(ds.load(i)[0], model.input_size) for i in range(n)])
    return crops.transpose(0, 3, 1, 2).astype(numpy.float32)


def minialex_logits(model, x):
    model.eval()
    with no_grad():     # what the loader feeds: the 0-255 pixels minus 255 * mean
        return model(x - (255 * MEAN).astype(numpy.float32)[None, :, None, None]).numpy()


@pytest.mark.parametrize("preset,dropout_mode", [("tiny", "paper"), ("mini", "paper"),
                                                 ("tiny", "inverted"), ("fashion", "paper")])
def test_onnxruntime_computes_what_minialex_computes(preset, dropout_mode):
    model = AlexNet(num_classes=10, preset=preset, seed=3, dropout_mode=dropout_mode)
    x = pixels(model)
    logits, probs = runtime(build_graph(model, mean=MEAN))(x)
    want = minialex_logits(model, x)
    assert numpy.abs(logits - want).max() <= 1e-5 * max(1.0, numpy.abs(want).max())
    e = numpy.exp(want - want.max(axis=1, keepdims=True))
    numpy.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("without", [("relu",), ("lrn", "overlap", "dropout")])
def test_a_model_without_some_tricks_exports_the_same_function(without):
    model = AlexNet(num_classes=10, preset="tiny", seed=4, without=without)
    x = pixels(model)
    logits, _ = runtime(build_graph(model, mean=MEAN))(x)
    want = minialex_logits(model, x)
    assert numpy.abs(logits - want).max() <= 1e-5 * max(1.0, numpy.abs(want).max())
    ops = {n.op_type for n in build_graph(model, mean=MEAN).graph.node}
    assert ("Tanh" in ops) == ("relu" in without) and ("LRN" in ops) == ("lrn" not in without)


def test_lrn_alpha_is_five_times_the_papers_and_each_column_normalises_alone():
    model = AlexNet(num_classes=10, preset="tiny", seed=3)
    for c in (model.column0, model.column1):   # large activations, so LRN's sum counts
        c.conv1.weight.data *= 40
    x = pixels(model)
    want = minialex_logits(model, x)
    proto = build_graph(model, mean=MEAN)
    lrn = [n for n in proto.graph.node if n.op_type == "LRN"]
    alpha = {a.name: a.f for a in lrn[0].attribute}["alpha"]
    assert len(lrn) == 2 and alpha == pytest.approx(5 * 1e-4)   # ONNX divides alpha by n = 5
    ok = numpy.abs(runtime(proto)(x)[0] - want).max()
    mixed = numpy.abs(runtime(build_graph(model, mean=MEAN, lrn_groups=1))(x)[0] - want).max()
    assert ok < 1e-5 * numpy.abs(want).max() < mixed / 100    # one LRN over both columns: wrong


@pytest.mark.slow                        # building the paper's net: ~250 MB, several seconds
def test_the_paper_preset_graph():
    model = AlexNet(num_classes=1000, preset="paper", seed=0)
    proto = build_graph(model, mean=MEAN, classes=[f"c{k}" for k in range(1000)])
    assert parameter_count(proto) == 60_965_224
    shapes = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    assert shapes["conv1.weight"] == (96, 3, 11, 11) and shapes["conv2.weight"] == (256, 48, 5, 5)
    assert shapes["conv3.weight"] == (384, 256, 3, 3) and shapes["fc6.weight"] == (4096, 9216)
    convs = {n.input[1]: {a.name: a.i for a in n.attribute}["group"]
             for n in proto.graph.node if n.op_type == "Conv"}
    assert convs == {"conv1.weight": 1, "conv2.weight": 2, "conv3.weight": 1,
                     "conv4.weight": 2, "conv5.weight": 2}
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    dims = [d.dim_value or d.dim_param for d in inferred.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 227, 227]
    assert [d.dim_value or d.dim_param for d in
            inferred.output[0].type.tensor_type.shape.dim] == ["N", 1000]
    x = pixels(model, n=1)              # and it computes what minialex computes
    want = minialex_logits(model, x)
    assert numpy.abs(runtime(proto)(x)[0] - want).max() <= 1e-5 * numpy.abs(want).max()
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["input_size"] == 227 and meta["mean"] == list(MEAN) and len(meta["classes"]) == 1000


def test_what_cannot_be_exported_is_refused():
    from minialex.tools.export_onnx import ExportError
    with pytest.raises(ExportError, match="two-column AlexNet only"):
        build_graph(OneColumnAlexNet(num_classes=10, preset="tiny"))
    with pytest.raises(ExportError, match="float32 graphs"):
        build_graph(AlexNet(num_classes=10, preset="tiny", dtype=numpy.float64))


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "a.h5"), "--out", "m.onnx"])
    assert result.exit_code == 1 and "pip install 'minialex[onnx]'" in result.output


def test_export_command_on_a_trained_checkpoint(tmp_path):
    model = AlexNet(num_classes=3, preset="tiny", seed=1)
    data = {"mean": MEAN, "pca_eigenvalues": numpy.ones(3), "pca_eigenvectors": numpy.eye(3),
            "classes": numpy.array([b"a", b"b", b"c"]),
            "class_names": numpy.array([b"apple", b"bee", b"cat"]), "spec": "builtin",
            "base_size": 38}
    minialex.save(tmp_path / "best.h5", model, extra={"data": data})
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "best.h5"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{sum(p.data.size for p in model.parameters()):,} parameters" in result.output
    proto = onnx.load(str(out))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["class_names"] == ["apple", "bee", "cat"] and meta["base_size"] == 38
    x = pixels(model, n=2)
    assert numpy.abs(runtime(proto)(x)[0] - minialex_logits(model, x)).max() < 1e-5
    result = CliRunner().invoke(main, ["export", str(tmp_path / "nothing.h5"), "--out", str(out)])
    assert result.exit_code == 1 and result.output.startswith("error: ")
