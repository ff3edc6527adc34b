"""Lesson 15's tasks, solved."""
from minialex.models import count_parameters, get_preset


def allreduce_bytes(preset, num_classes, itemsize):
    return count_parameters(preset, num_classes) * itemsize


def crossover_batch(preset, num_classes):
    p = get_preset(preset)
    s = p.spatial_sizes()
    # per image: three crossings both ways, forward and backward, and fc7 -> fc8 one way
    per_image = 4 * (2 * 2 * (p.channels[1] * s["pool2"] ** 2 + p.channels[4] * s["pool5"] ** 2
                              + p.fc) + 2 * p.fc)
    return allreduce_bytes(preset, num_classes, 4) // per_image + 1
