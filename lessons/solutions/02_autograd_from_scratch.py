"""Lesson 2's tasks, solved."""
import minialex


class Exp(minialex.Function):
    def forward(self, x):
        y = minialex.get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy * y                    # d e^x / dx = e^x, the saved output


class Mul(minialex.Function):
    def forward(self, x, y):
        self.save_for_backward(x, y)
        return x * y

    def backward(self, gz):
        x, y = self.saved
        return gz * y, gz * x            # one gradient per input, in the inputs' order
