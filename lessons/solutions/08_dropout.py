"""Lesson 8's task, solved."""


def dropout(x, keep, p, training, mode):
    if training:
        return x * keep if mode == "paper" else x * keep / (1 - p)
    return x * (1 - p) if mode == "paper" else x
