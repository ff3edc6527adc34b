"""The random generators of a model, saved and restored: what makes ``--resume`` exact (§5's
dropout draws a fresh mask every step, so a resumed run must continue each generator's stream).

    states = generator_states(model)          # {name: JSON text}, stored in the checkpoint
    restore_generator_states(model, states)   # after loading the weights

Only NumPy generators keep a readable state; CuPy's dropout generators on a GPU do not, so an
exactly reproduced resume is a CPU guarantee (docs/training.md).
"""

from __future__ import annotations

import json
from typing import Dict

import numpy


def find_generators(model) -> Dict[str, object]:
    """The NumPy generators the model draws dropout masks from, by name: AlexNet's
    ``dropout_generators`` and any ``nn.Dropout`` layer's ``generator``. Their states go into
    the checkpoint. (CuPy generators on a GPU keep no readable state, so exact resume is a CPU
    guarantee.)"""
    found = {}
    for i, g in enumerate(getattr(model, "dropout_generators", ()) or ()):
        found[f"dropout_generators.{i}"] = g
    for name, module in (model.named_modules() if hasattr(model, "named_modules") else ()):
        g = module.__dict__.get("generator")
        if g is not None:
            found[f"{name}.generator"] = g
    return {k: g for k, g in found.items() if isinstance(g, numpy.random.Generator)}


def generator_states(model) -> Dict[str, str]:
    return {k: json.dumps(g.bit_generator.state) for k, g in find_generators(model).items()}


def restore_generator_states(model, states: Dict[str, str]) -> None:
    gens = find_generators(model)
    for key, text in states.items():
        if key in gens:
            gens[key].bit_generator.state = json.loads(text)
