"""Lesson 11's task, solved."""
from minialex.models import get_preset


def count(preset, num_classes):
    p = get_preset(preset)
    s = p.spatial_sizes()
    c1, c2, c3, c4, c5 = p.channels                    # kernels per column
    k1 = p.conv1_kernel
    convs = [  # (kernels over both columns, channels each kernel reads, kernel side, output side)
        (2 * c1, 3, k1, s["conv1"]),
        (2 * c2, c1, 5, s["conv2"]),                   # own column
        (2 * c3, 2 * c2, 3, s["conv3"]),               # both columns
        (2 * c4, c3, 3, s["conv4"]),                   # own column
        (2 * c5, c4, 3, s["conv5"]),                   # own column
    ]
    fcs = [(2 * c5 * s["pool5"] ** 2, 2 * p.fc), (2 * p.fc, 2 * p.fc), (2 * p.fc, num_classes)]
    params = macs = 0
    for k, c, side, out in convs:
        params += k * c * side * side + k
        macs += k * c * side * side * out * out
    for m, n in fcs:
        params += m * n + n
        macs += m * n
    return params, macs
