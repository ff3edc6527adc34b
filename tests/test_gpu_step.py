"""A training step on the GPU equals the same step on the CPU (float32 tolerance).

The whole AlexNet (tiny preset, both columns on cuda:0) takes one SGD step from the same weights
on the same batch, with the same fixed dropout masks; the loss, every gradient and every updated
parameter must agree with the NumPy run. Skipped without CuPy and a GPU.
"""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex.models import AlexNet
from minialex.models.alexnet import DROPOUT_SITES
from minialex.optim import SGD

pytestmark = pytest.mark.gpu


def one_step(device, images, labels, masks):
    model = AlexNet(num_classes=10, preset="tiny", devices=(device, device), seed=3)
    model.set_dropout_masks(masks)
    opt = SGD(model.named_parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt.zero_grad()
    x = minialex.Tensor(images, device=device)
    loss = F.cross_entropy(model(x), minialex.Device(device).put(labels))
    loss.backward()
    grads = {n: minialex.as_numpy(p.grad) for n, p in model.named_parameters()}
    opt.step()
    params = {n: minialex.as_numpy(p.data) for n, p in model.named_parameters()}
    return loss.item(), grads, params


def test_gpu_step_equals_cpu_step():
    if not minialex.gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    rng = numpy.random.default_rng(0)
    probe = AlexNet(num_classes=10, preset="tiny", seed=3)
    s, n = probe.input_size, 8
    images = rng.standard_normal((n, 3, s, s)).astype(numpy.float32)
    labels = rng.integers(0, 10, n)
    fc = probe.column0.fc6.weight.shape[0]
    masks = {site: (rng.random((n, fc)) > 0.5).astype(numpy.float32) for site in DROPOUT_SITES}

    loss_cpu, g_cpu, p_cpu = one_step("cpu", images, labels, masks)
    loss_gpu, g_gpu, p_gpu = one_step("cuda:0", images, labels, masks)

    assert abs(loss_cpu - loss_gpu) <= 1e-4 * max(1.0, abs(loss_cpu))
    for name in g_cpu:
        scale = numpy.abs(g_cpu[name]).max() + 1e-12
        assert numpy.abs(g_cpu[name] - g_gpu[name]).max() / scale < 1e-3, name
        numpy.testing.assert_allclose(p_gpu[name], p_cpu[name], rtol=1e-4, atol=1e-6, err_msg=name)
