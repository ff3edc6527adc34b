"""Lesson 5's task, solved."""
import minialex


class LeakyReLU(minialex.Function):
    def forward(self, x):
        xp = minialex.get_array_module(x)
        self.positive = x > 0
        return xp.where(self.positive, x, 0.01 * x)

    def backward(self, gy):
        xp = minialex.get_array_module(gy)
        return xp.where(self.positive, gy, 0.01 * gy)
