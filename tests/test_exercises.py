"""The lessons' self-checking tasks (minialex.tools.exercises) against their solutions.

For every check: the solution in lessons/solutions/ passes; the blank template (raising
NotImplementedError, or returning None) fails with "not yet", not a traceback; and deliberately
wrong answers (a sign flipped, an index off by one, a forgotten term) fail with "wrong: ...".
"""

import importlib.util
import pathlib

import numpy as np
import pytest

import minialex
import minialex.functional as F
from minialex.tools import exercises as ex

SOLUTIONS = pathlib.Path(__file__).resolve().parent.parent / "lessons" / "solutions"


def solution(lesson: str):
    """The solutions module of lesson ``lesson`` ('01'..'15')."""
    (path,) = SOLUTIONS.glob(f"{lesson}_*.py")
    spec = importlib.util.spec_from_file_location(f"solution_{lesson}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blank(*args):
    raise NotImplementedError


class BlankFunction(minialex.Function):
    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError


BLANK_KERNEL = ex.RELU_SIGNATURE + " {\n    // your code\n}\n"


# -- the wrong answers, one or more per check -------------------------------------------------

def _wrong_sigmoid_float64(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))           # loses float32


def _sigmoid_overflows(x):
    return 1 / (1 + np.exp(-x))                                 # e^800 overflows: a warning, inf


def _wrong_sigmoid_sign(x):
    return 1 / (1 + np.exp(x))                                  # sign flipped


def _sol(lesson, name):
    return getattr(solution(lesson), name)


class ExpForgetsOutput(minialex.Function):
    def forward(self, x):
        return np.exp(x)

    def backward(self, gy):
        return gy                                                # d e^x/dx taken as 1


class MulSwapped(minialex.Function):
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, gz):
        x, y = self.saved
        return gz * x, gz * y                                    # each input's own value


class LeakyWrongSlope(minialex.Function):
    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, 0.01 * x)

    def backward(self, gy):
        return np.where(self.positive, gy, 0.0)                  # ReLU's backward


def _forward_difference(f, x, eps):
    grad = np.zeros_like(x)
    base = f(x)
    for idx in np.ndindex(*x.shape):
        keep = x[idx]
        x[idx] = keep + eps
        grad[idx] = (f(x) - base) / eps
        x[idx] = keep
    return grad


def _no_restore(f, x, eps):
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        x[idx] += eps
        plus = f(x)
        x[idx] -= 2 * eps
        grad[idx] = (plus - f(x)) / (2 * eps)                    # x left eps below
    return grad


def _checker_upstream_ones(op, x, eps):
    import minialex
    xt = minialex.Tensor(x, requires_grad=True)
    y = op()(xt)
    y.backward(np.ones(y.shape))                                 # ones hide the forgotten flip
    numeric = _sol("03", "central_difference")(
        lambda a: float(op()(minialex.Tensor(a)).data.sum()), x.copy(), eps)
    return float((np.abs(xt.grad - numeric) / np.maximum(np.abs(numeric), 1e-7)).max())


def _checker_forward_difference(op, x, eps):
    g = np.random.default_rng(0).standard_normal(x.shape)
    xt = minialex.Tensor(x, requires_grad=True)
    op()(xt).backward(g)
    numeric = _forward_difference(lambda a: float((op()(minialex.Tensor(a)).data * g).sum()),
                                  x.copy(), eps)
    return float((np.abs(xt.grad - numeric) / np.maximum(np.abs(numeric), 1e-7)).max())


def _conv_forward_off_by_one(x, w, b, stride, padding):
    y = _sol("04", "conv2d_forward")(x, w, b, stride, padding)
    return y[:, :, :-1] if y.shape[2] > 1 else y * 0             # one output row short


def _conv_forward_flipped(x, w, b, stride, padding):
    return _sol("04", "conv2d_forward")(x, w[:, :, ::-1, ::-1].copy(), b, stride, padding)


def _conv_backward_no_bias_sum(x, w, gy, stride, padding):
    dx, dw, db = _sol("04", "conv2d_backward")(x, w, gy, stride, padding)
    return dx, dw, gy.sum(axis=(0, 2, 3)) / gy.shape[0]          # averaged over the batch


def _conv_backward_sign(x, w, gy, stride, padding):
    dx, dw, db = _sol("04", "conv2d_backward")(x, w, gy, stride, padding)
    return dx, -dw, db


def _lrn_forgets_neighbours(a, g, size, alpha, beta, k):
    s = k + alpha * solution("06")._window_sum(a * a, size)
    return g * s ** -beta


def _lrn_sign(a, g, size, alpha, beta, k):
    s = k + alpha * solution("06")._window_sum(a * a, size)
    b = a * s ** -beta
    return g * s ** -beta + 2 * alpha * beta * a * solution("06")._window_sum(g * b / s, size)


def _lrn_pytorch_undivided(x, size, alpha, beta, k):
    return F.local_response_norm(minialex.Tensor(x), size, alpha, beta, k).numpy()


def _pool_assigning(x, gy, size, stride):
    gx = np.zeros_like(x)
    for idx in np.ndindex(*gy.shape):
        i, k, oy, ox = idx
        win = x[i, k, oy * stride:oy * stride + size, ox * stride:ox * stride + size]
        dy, dx = np.unravel_index(np.argmax(win), win.shape)
        gx[i, k, oy * stride + dy, ox * stride + dx] = gy[idx]   # "=" instead of "+="
    return gx


def _pool_off_by_one(x, gy, size, stride):
    gx = np.zeros_like(x)
    for idx in np.ndindex(*gy.shape):
        i, k, oy, ox = idx
        win = x[i, k, oy * stride:oy * stride + size, ox * stride:ox * stride + size]
        dy, dx = np.unravel_index(np.argmax(win), win.shape)
        gx[i, k, oy * stride + dy, min(ox * stride + dx + 1, x.shape[3] - 1)] += gy[idx]
    return gx


def _dropout_half_always(x, keep, p, training, mode):
    if training:
        return x * keep if mode == "paper" else x * keep * 2     # 1 / (1 - p) only for p = 0.5
    return x * 0.5 if mode == "paper" else x


def _dropout_swapped(x, keep, p, training, mode):
    return _sol("08", "dropout")(x, keep, p, training, "inverted" if mode == "paper" else "paper")


def _lighting_sqrt(images, alpha):
    pixels = images.reshape(-1, 3) / 255.0
    values, vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order] * np.sign(vectors[:, order].sum(axis=0))
    return (alpha * np.sqrt(values)) @ vectors.T                 # standard deviations


def _lighting_unsorted(images, alpha):
    pixels = images.reshape(-1, 3) / 255.0
    values, vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))    # ascending: not sorted
    vectors = vectors * np.sign(vectors.sum(axis=0))
    return (alpha * values) @ vectors.T


def _ten_crops_off_by_one(image, size):
    far, c = image.shape[0] - size - 1, (image.shape[0] - size) // 2     # corners one short
    far = max(far, 0)
    patches = [image[t:t + size, l:l + size] for t, l in ((0, 0), (0, far), (far, 0), (far, far), (c, c))]
    return np.stack(patches + [p[:, ::-1] for p in patches])


def _ten_crops_flipped_upside_down(image, size):
    crops = _sol("09", "ten_crops")(image, size)
    return np.concatenate([crops[:5], crops[:5, ::-1]])           # mirrored the wrong way


def _grouped_halves_always(x, w, b, groups):
    return _sol("10", "grouped_conv")(x, w, b, 2 if x.shape[1] % 2 == 0 else 1)


def _grouped_swapped(x, w, b, groups):
    y = _sol("10", "grouped_conv")(x, w, b, groups)
    k = w.shape[0] // groups
    return np.concatenate([y[:, k:], y[:, :k]], axis=1) if groups > 1 else y


def _count_all_read_both(preset, num_classes):
    from minialex.models import get_preset
    params, macs = _sol("11", "count")(preset, num_classes)
    p = get_preset(preset)
    s = p.spatial_sizes()
    c1, c2, c3, c4, c5 = p.channels
    extra = 2 * c2 * c1 * 25 + 2 * c4 * c3 * 9 + 2 * c5 * c4 * 9  # if conv2/4/5 read both columns
    return params + extra, macs


def _count_no_bias(preset, num_classes):
    from minialex.models import describe
    params, macs = _sol("11", "count")(preset, num_classes)
    biases = sum(2 * r.output[0] if r.layer != "fc8" else r.output[0]
                 for r in describe(preset, num_classes) if r.params)
    return params - biases, macs


def _sgd_decays_biases(weights, velocities, grads, lr, momentum, weight_decay):
    new_w, new_v = {}, {}
    for name, w in weights.items():
        new_v[name] = momentum * velocities[name] - weight_decay * lr * w - lr * grads[name]
        new_w[name] = w + new_v[name]
    return new_w, new_v


def _sgd_pytorch(weights, velocities, grads, lr, momentum, weight_decay):
    new_w, new_v = {}, {}
    for name, w in weights.items():
        decay = 0.0 if name.endswith("bias") else weight_decay
        new_v[name] = momentum * velocities[name] + grads[name] + decay * w   # raw gradients in v
        new_w[name] = w - lr * new_v[name]
    return new_w, new_v


def _nearest_off_by_one(queries, keys, k):
    d2 = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)
    return np.argsort(d2, axis=1)[:, 1:k + 1]                    # skips the nearest


def _nearest_farthest(queries, keys, k):
    d2 = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)
    return np.argsort(-d2, axis=1)[:, :k]


def _topk_lowest(probs, labels, k):
    top = np.argsort(probs, axis=1)[:, :k]                       # sign flipped: the k lowest
    return float(np.mean(~(top == labels[:, None]).any(axis=1)))


def _topk_off_by_one(probs, labels, k):
    top = np.argsort(-probs, axis=1)[:, :k - 1]
    return float(np.mean(~(top == labels[:, None]).any(axis=1)))


KERNEL_NO_LOOP = ex.RELU_SIGNATURE + """ {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) out[i] = x[i] < 0 ? T(0) : x[i];
}
"""
KERNEL_LOSES_NAN = ex.RELU_SIGNATURE + """ {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x)
        out[i] = x[i] > 0 ? x[i] : T(0);
}
"""
KERNEL_SYNTAX = ex.RELU_SIGNATURE + " {\n    out[0] = x[0]\n}\n"
KERNEL_NOT_A_TEMPLATE = "__global__ void relu_forward(float* out) { out[0] = 0; }"


def _allreduce_params_only_float32(preset, num_classes, itemsize):
    return _sol("15", "allreduce_bytes")(preset, num_classes, 4)


def _crossover_forward_only(preset, num_classes):
    from minialex.models import count_parameters, get_preset
    p = get_preset(preset)
    s = p.spatial_sizes()
    per_image = 4 * (2 * (p.channels[1] * s["pool2"] ** 2 + p.channels[4] * s["pool5"] ** 2
                          + p.fc) + p.fc)
    return 4 * count_parameters(preset, num_classes) // per_image + 1


# (check, solution (lesson, name), blank, wrong answers)
CASES = {
    "sigmoid": (ex.check_sigmoid, ("01", "sigmoid"), blank,
                [_wrong_sigmoid_float64, _wrong_sigmoid_sign, _sigmoid_overflows]),
    "exchange_bytes": (ex.check_exchange_bytes, ("01", "exchange_bytes"), blank,
                       [lambda batch, dtype: batch * 128 * 13 * 13 * 4,
                        lambda batch, dtype: batch * 128 * 13 * 13 * np.dtype(dtype).itemsize * 2]),
    "exp": (ex.check_exp_function, ("02", "Exp"), BlankFunction, [ExpForgetsOutput]),
    "mul": (ex.check_mul_function, ("02", "Mul"), BlankFunction, [MulSwapped]),
    "central_difference": (ex.check_central_difference, ("03", "central_difference"), blank,
                           [_forward_difference, _no_restore]),
    "gradient_checker": (ex.check_gradient_checker, ("03", "gradient_error"), blank,
                         [_checker_upstream_ones, _checker_forward_difference]),
    "conv_forward": (ex.check_conv_forward, ("04", "conv2d_forward"), blank,
                     [_conv_forward_off_by_one, _conv_forward_flipped]),
    "conv_backward": (ex.check_conv_backward, ("04", "conv2d_backward"), blank,
                      [_conv_backward_no_bias_sum, _conv_backward_sign]),
    "leaky_relu": (ex.check_leaky_relu, ("05", "LeakyReLU"), BlankFunction, [LeakyWrongSlope]),
    "lrn_backward": (ex.check_lrn_backward, ("06", "lrn_backward"), blank,
                     [_lrn_forgets_neighbours, _lrn_sign]),
    "lrn_pytorch": (ex.check_lrn_pytorch, ("06", "lrn_pytorch"), blank, [_lrn_pytorch_undivided]),
    "max_pool_backward": (ex.check_max_pool_backward, ("07", "max_pool_backward"), blank,
                          [_pool_assigning, _pool_off_by_one]),
    "dropout": (ex.check_dropout, ("08", "dropout"), blank,
                [_dropout_half_always, _dropout_swapped]),
    "lighting": (ex.check_lighting, ("09", "lighting_shift"), blank,
                 [_lighting_sqrt, _lighting_unsorted]),
    "ten_crops": (ex.check_ten_crops, ("09", "ten_crops"), blank,
                  [_ten_crops_off_by_one, _ten_crops_flipped_upside_down]),
    "grouped_conv": (ex.check_grouped_conv, ("10", "grouped_conv"), blank,
                     [_grouped_halves_always, _grouped_swapped]),
    "counts": (ex.check_counts, ("11", "count"), blank, [_count_all_read_both, _count_no_bias]),
    "sgd_update": (ex.check_sgd_update, ("12", "sgd_update"), blank,
                   [_sgd_decays_biases, _sgd_pytorch]),
    "nearest": (ex.check_nearest, ("13", "nearest"), blank,
                [_nearest_off_by_one, _nearest_farthest]),
    "topk_error": (ex.check_topk_error, ("13", "topk_error"), blank,
                   [_topk_lowest, _topk_off_by_one]),
    "relu_kernel": (ex.check_relu_kernel, ("14", "RELU_SOURCE"), BLANK_KERNEL,
                    [KERNEL_NO_LOOP, KERNEL_LOSES_NAN, KERNEL_SYNTAX, KERNEL_NOT_A_TEMPLATE]),
    "allreduce_bytes": (ex.check_allreduce_bytes, ("15", "allreduce_bytes"), blank,
                        [_allreduce_params_only_float32]),
    "crossover_batch": (ex.check_crossover_batch, ("15", "crossover_batch"), blank,
                        [_crossover_forward_only]),
}


def _needs_compiler(name):
    if name == "relu_kernel":
        from minialex.tools import cuda_host
        if not cuda_host.compiler():
            pytest.skip("no C++ compiler (g++) to run CUDA kernels on the CPU")


@pytest.mark.parametrize("name", CASES)
def test_solution_passes(name, capsys):
    _needs_compiler(name)
    check, (lesson, attr), _, _ = CASES[name]
    verdict = check(_sol(lesson, attr))
    assert verdict, str(verdict)
    assert str(verdict).startswith("correct")
    assert capsys.readouterr().out.strip() == str(verdict)      # the verdict is printed


@pytest.mark.parametrize("name", CASES)
def test_blank_template_says_not_yet(name):
    _needs_compiler(name)
    check, _, template, _ = CASES[name]
    verdict = check(template)
    assert not verdict
    message = str(verdict)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("not yet:"), message


@pytest.mark.parametrize("name, i", [(n, i) for n, c in CASES.items() for i in range(len(c[3]))])
def test_wrong_answer_is_caught(name, i):
    _needs_compiler(name)
    check, _, _, wrong = CASES[name]
    verdict = check(wrong[i])
    assert not verdict
    assert str(verdict).startswith("wrong:") and "\n" not in str(verdict), str(verdict)


# -- the verdicts' wording ------------------------------------------------------------------

def test_verdict_names_the_gradient_the_index_and_the_error():
    verdict = ex.check_conv_backward(_conv_backward_sign)
    text = str(verdict)
    assert text.startswith("wrong: the gradient of w (x (2, 3, 7, 6)"), text
    assert " differs at [" in text and "(relative error 2)" in text, text


def test_an_exception_in_the_learners_code_is_one_line_naming_its_line():
    def broken(x, w, b, stride, padding):
        return x @ w                                            # shapes do not fit
    text = str(ex.check_conv_forward(broken))
    assert text.startswith("wrong: conv2d_forward raised ValueError: "), text
    assert "in broken)" in text and "\n" not in text, text


def test_a_wrong_shape_names_both_shapes():
    text = str(ex.check_max_pool_backward(lambda x, gy, size, stride: gy))
    assert text.startswith("wrong: the gradient of x (3x3/2, x (2, 3, 9, 9)) has shape "
                           "(2, 3, 4, 4), expected shape (2, 3, 9, 9)"), text


def test_answers_of_unforeseen_forms_are_one_line_verdicts():
    class ReturnsList(minialex.Function):
        def forward(self, x):
            return list(x)

        def backward(self, gy):
            return gy
    for check, answer in ((ex.check_exp_function, ReturnsList),
                          (ex.check_gradient_checker, lambda op, x, eps: "small"),
                          (ex.check_ten_crops, lambda image, size: [[1]]),
                          (ex.check_sgd_update, lambda w, v, g, *rest: (w, 3)),
                          (ex.check_relu_kernel, "__global__ and nothing else")):
        text = str(check(answer))
        assert text.startswith("wrong:") and "\n" not in text, text


def test_returning_none_and_non_numbers():
    assert str(ex.check_dropout(lambda *a: None)).startswith("not yet: dropout returned None")
    assert str(ex.check_nearest(lambda *a: "abc")).startswith("wrong: the neighbours")
    assert str(ex.check_exp_function(lambda x: x)).startswith("not yet: Exp should be a class")


def test_the_verdict_never_contains_the_expected_values():
    # The lighting check's message states where and by how much, never the expected shift.
    from minialex.data import compute_stats
    text = str(ex.check_lighting(_lighting_sqrt))
    assert "differs at [" in text
    rng = np.random.default_rng(12)
    light = rng.uniform(0.2, 0.8, (24, 16, 16, 1))
    tint = rng.standard_normal((24, 16, 16, 3)) * np.array([0.12, 0.06, 0.03])
    images = (np.clip(light + tint, 0, 1) * 255).round().astype(np.uint8)
    want = compute_stats(images).lighting(rng.standard_normal((5, 3)) * 0.1)
    assert not any(f"{v:.3g}" in text for v in want.ravel())


def test_crossing_bytes_per_image_agrees_with_the_transfer_log():
    """The lesson-15 reference counts what the transfer log records between the columns."""
    from minialex.models import AlexNet
    model = AlexNet(num_classes=10, preset="tiny", devices=("cpu:0", "cpu:1"), seed=0)
    rng = np.random.default_rng(0)
    logged = []
    for batch in (1, 3):
        x = minialex.Tensor(rng.standard_normal((batch, 3, model.input_size, model.input_size))
                            .astype(np.float32))
        with minialex.transfer_log() as log:
            F.cross_entropy(model(x), rng.integers(0, 10, batch)).backward()
        logged.append(sum(t.nbytes for t in log.transfers if not t.label.startswith("image")))
    assert logged == [ex.column_bytes_per_image("tiny"), 3 * ex.column_bytes_per_image("tiny")]


def test_network_counts_match_the_paper():
    params, macs = ex.network_counts("paper", 1000)
    assert params == 60_965_224
    # conv1..conv5 (weights times output positions), then fc6, fc7, fc8, written out by hand
    assert macs == (96 * 363 * 55 ** 2 + 256 * 1200 * 27 ** 2 + 384 * 2304 * 13 ** 2
                    + 384 * 1728 * 13 ** 2 + 256 * 1728 * 13 ** 2
                    + 9216 * 4096 + 4096 * 4096 + 4096 * 1000) == 724_406_816
