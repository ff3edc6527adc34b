"""Lesson 12's task, solved."""


def sgd_update(weights, velocities, grads, lr, momentum, weight_decay):
    new_w, new_v = {}, {}
    for name, w in weights.items():
        decay = 0.0 if name.endswith("bias") else weight_decay
        new_v[name] = momentum * velocities[name] - decay * lr * w - lr * grads[name]
        new_w[name] = w + new_v[name]
    return new_w, new_v
