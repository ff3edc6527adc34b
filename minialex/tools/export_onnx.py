"""``export``: a trained two-column AlexNet as an ONNX graph of standard operators, in test mode.

Seen on one device the two columns are grouped layers (models/placement.py, ``ColumnsTogether``),
and that is how they are written out: each layer's two columns' weights stacked on the output
axis, **column 0 first**, one node per layer:

    image (N, 3, S, S) float32: RGB pixels 0-255 of an S x S crop (S = input_size, 227 for 'paper')
    Sub 255*mean, Mul input_scale             the preprocessing, baked in (mean from /data);
                                              a grey preset ('fashion') first takes ReduceMean
                                              over the channels, as the model does
    conv1 Conv (group 1: both columns read the image), Relu, LRN per column, MaxPool 3/2 (§3.3-3.4)
    conv2 Conv group=2 (each column its own half), Relu, LRN per column, MaxPool
    conv3 Conv group=1 (the crossing: reads both columns), Relu
    conv4, conv5 Conv group=2, Relu; MaxPool; Flatten (channel-major: column 0's features first)
    fc6, fc7 Gemm (transB, both columns' neurons side by side), Relu, Mul 0.5 (§4.2 at test time)
    fc8 Gemm -> "logits" (N, classes); Softmax -> "probabilities"

LRN: ONNX (like PyTorch and Caffe) divides alpha by the window size n,
``b = a / (bias + alpha/n * sum a^2)^beta``; minialex uses the paper's literal ``k + alpha * sum``
(§3.3, alpha = 1e-4, models/presets.py), so the graph's alpha is ``n * 1e-4 = 5e-4``. Each column
normalises only its own channels (``lrn_in_groups``): one LRN over the stacked channels would
mix the two columns at their border, so the graph reshapes (N, 2C, H, W) to (2N, C, H, W) around
the LRN. Dropout's test-time form follows the model's ``dropout_mode``: 'paper' multiplies by
0.5, 'inverted' is the identity. The model's metadata (``metadata_props``) holds the preset,
input_size, base_size (the side images are resized to before the central crop, §2), the mean,
input_scale and the classes with their human names, as JSON text.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy

from ..checkpoint import model_state
from ..files import check_output, write_atomic
from ..models.alexnet import AlexNet
from ..models.presets import DROPOUT_P, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, POOL_SIZE, POOL_STRIDE
from .inference import load_trained


OPSET = 17


class ExportError(ValueError):
    """A model or request that an ONNX graph of standard operators cannot represent here."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("export needs the onnx package: pip install 'minialex[onnx]' (or "
                          "pip install onnx)") from None
    return onnx


def build_graph(model, *, mean: Optional[Sequence[float]] = None, classes=None,
                class_names=None, base_size: Optional[int] = None, lrn_groups: int = 2):
    """The ONNX ModelProto of ``model`` (an AlexNet) in test mode, inputs described above.

    mean: the training set's per-channel mean on the [0, 1] scale (data/stats.py), subtracted in
    the graph as 255*mean; None leaves the input as the model reads it (mean already subtracted).
    lrn_groups: 2 as minialex computes; 1 (one LRN across both columns, Caffe's grouped form)
    exists only to show, in the tests, that the difference is visible.
    """
    onnx = _onnx()
    if not isinstance(model, AlexNet):
        raise ExportError(f"export writes the two-column AlexNet only, not {type(model).__name__}")
    if model.dtype != numpy.float32:
        raise ExportError(f"export writes float32 graphs; this model is {model.dtype}")
    g = _Graph(model)
    h = "image"
    if mean is not None:
        h = g.node("Sub", [h, g.const("mean_255", 255.0 * numpy.reshape(mean, (1, 3, 1, 1)))])
    if model.preset_spec.grey:
        h = g.node("ReduceMean", [h], axes=[1], keepdims=1)      # opset 17: axes an attribute
    if model.preset_spec.input_scale != 1.0:
        h = g.node("Mul", [h, g.const("input_scale", model.preset_spec.input_scale)])
    h = g.fully_connected(g.convolutions(h, lrn_groups))
    proto = g.model_proto(h)
    p = model.preset_spec
    meta = {"preset": p.name, "input_size": p.input_size, "base_size": base_size,
            "mean": None if mean is None else [float(m) for m in mean],
            "input_scale": p.input_scale, "grey": p.grey, "dropout_mode": model.dropout_mode,
            "without": list(model.without),
            "input": "RGB pixels 0-255, NCHW float32, an input_size crop of the image resized to "
                     "base_size (shorter side, central crop)" + ("" if mean is not None else
                                                                 ", the mean already subtracted"),
            "classes": classes, "class_names": class_names}
    onnx.helper.set_model_props(proto, {key: json.dumps(v) for key, v in meta.items()})
    onnx.checker.check_model(proto)
    return proto


class _Graph:
    """The nodes and the initializers (the weights) of one exported AlexNet, built layer by
    layer in the grouped one-device form that minialex runs (models/placement.py)."""

    def __init__(self, model):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.model, self.p, self.state = model, model.preset_spec, model_state(model)
        self.nodes, self.inits, self.count = [], [], 0
        self.off = set(model.without)              # tricks left out (models/common.py)
        self.unit = "Tanh" if "relu" in self.off else "Relu"

    def const(self, name, array, dtype=numpy.float32) -> str:
        self.inits.append(self.numpy_helper.from_array(numpy.asarray(array, dtype=dtype), name))
        return name

    def node(self, op, inputs, **attrs) -> str:
        self.count += 1
        out = f"{op.lower()}_{self.count}"
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def stacked(self, layer, part):
        """Column 0's kernels or neurons first, then column 1's."""
        return numpy.concatenate([self.state[f"column{c}.{layer}.{part}"] for c in (0, 1)])

    def convolutions(self, h: str, lrn_groups: int) -> str:
        """conv1-conv5, each with its nonlinearity, LRN after conv1 and conv2, pooling after
        conv1, conv2 and conv5 (§3.5)."""
        pool = POOL_STRIDE if "overlap" in self.off else POOL_SIZE
        sides = self.p.spatial_sizes()
        for shape in self.p.conv_layers():
            name = shape.name
            w = self.const(f"{name}.weight", self.stacked(name, "weight"))
            groups = 1 if name in ("conv1", "conv3") else 2   # as ColumnsTogether.conv decides
            h = self.node(self.unit, [self.node(
                "Conv", [h, w, self.const(f"{name}.bias", self.stacked(name, "bias"))],
                kernel_shape=[shape.kernel] * 2, strides=[shape.stride] * 2,
                pads=[shape.padding] * 4, group=groups)])
            if name in ("conv1", "conv2") and "lrn" not in self.off:
                h = self.lrn(h, name, 2 * shape.outputs, sides[name], lrn_groups)
            if name in ("conv1", "conv2", "conv5"):
                h = self.node("MaxPool", [h], kernel_shape=[pool] * 2, strides=[POOL_STRIDE] * 2)
        return h

    def lrn(self, h: str, name: str, channels: int, side: int, lrn_groups: int) -> str:
        """LRN within each column: the channels as ``lrn_groups`` images of their own (§3.3;
        ONNX's alpha is divided by the size, the paper's is not)."""
        c = channels // lrn_groups
        h = self.node("Reshape", [h, self.const(f"{name}.lrn_in", [-1, c, side, side], numpy.int64)])
        h = self.node("LRN", [h], size=LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA,
                      bias=LRN_K)
        return self.node("Reshape", [h, self.const(f"{name}.lrn_out", [-1, channels, side, side],
                                                   numpy.int64)])

    def fully_connected(self, h: str) -> str:
        """fc6 and fc7 with their nonlinearity and the paper's test-time dropout (x 0.5, §4.2)."""
        h = self.node("Flatten", [h], axis=1)
        for name in ("fc6", "fc7"):
            h = self.node(self.unit, [self.node(
                "Gemm", [h, self.const(f"{name}.weight", self.stacked(name, "weight")),
                         self.const(f"{name}.bias", self.stacked(name, "bias"))], transB=1)])
            if self.model.dropout_mode == "paper" and "dropout" not in self.off:
                h = self.node("Mul", [h, self.const(f"{name}.dropout", 1.0 - DROPOUT_P)])
        return h

    def model_proto(self, h: str):
        """fc8 (the logits) and the softmax as the graph's two outputs, in an opset-17 model."""
        from onnx import TensorProto
        helper, s, k = self.helper, self.p.input_size, self.model.num_classes
        self.nodes.append(helper.make_node(
            "Gemm", [h, self.const("fc8.weight", self.state["fc8.weight"]),
                     self.const("fc8.bias", self.state["fc8.bias"])], ["logits"], transB=1))
        self.nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        graph = helper.make_graph(
            self.nodes, f"minialex AlexNet '{self.p.name}'",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, s, s])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", k])
             for n in ("logits", "probabilities")], initializer=self.inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="minialex")
        proto.ir_version = 8                              # what opset 17 came with: older runtimes
        return proto


def parameter_count(proto) -> int:
    """Learned numbers in an exported graph: the layers' weights and biases (not the constants)."""
    from onnx import numpy_helper
    return sum(numpy_helper.to_array(t).size for t in proto.graph.initializer
               if t.name.endswith((".weight", ".bias")))


def export_checkpoint(path: str, out: str) -> str:
    """Write the checkpoint ``path`` (written by train) to ``out`` as ONNX; returns a summary.
    ``out`` is checked first (``files.check_output``: never the checkpoint itself, nor another
    HDF5 file) and written whole (``files.write_atomic``)."""
    _onnx()                                            # before reading a large checkpoint
    check_output(out, reads=[path], what="the ONNX graph")   # never over the checkpoint
    tm = load_trained(path, devices="cpu")
    proto = build_graph(tm.model, mean=tm.stats.mean, classes=tm.classes,
                        class_names=tm.class_names, base_size=tm.base_size)
    data = proto.SerializeToString()                   # the graph in memory, then written whole
    write_atomic(out, lambda fh: fh.write(data), len(data), "the ONNX graph")
    s = tm.model.input_size
    return (f"{out}: AlexNet '{tm.model.preset}', {parameter_count(proto):,} parameters, opset "
            f"{OPSET}; input 'image' (N, 3, {s}, {s}) RGB 0-255 (mean subtracted in the graph), "
            f"outputs 'logits' and 'probabilities' over {tm.model.num_classes} classes")
