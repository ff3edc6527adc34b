"""AlexNet and its sizes.

- ``AlexNet``          the two-column network of §3.5; how its columns run is a placement
                       (placement.py): column by column on two devices, or together on one
- ``OneColumnAlexNet`` the one-GPU net the paper compares against (§3.2)
- ``PRESETS``          'paper', 'mini', 'fashion', 'tiny', each with its layer table (``Preset.layers``);
                       ``describe``/``table`` print the per-layer table
- ``build_model``      rebuild a model from its ``config`` (used by ``minialex.load``)
"""

import numpy

from .alexnet import DROPOUT_SITES, AlexNet, Column
from .common import MODEL_TRICKS, WITHOUT, check_without
from .init import INIT_SCHEMES, initial_parameters, parameter_shapes
from .legacy import RENAMED_CLASSES, upgrade_state
from .one_column import OneColumnAlexNet
from .presets import PAPER_INPUT_SIZE, PRESETS, LayerShape, Preset, get_preset
from .summary import LayerRow, count_parameters, describe, table


MODEL_CLASSES = {"AlexNet": AlexNet, "OneColumnAlexNet": OneColumnAlexNet}


def build_network(num_classes: int, preset, devices, seed=None, without=()):
    """The network a training run asks for: AlexNet, or with 'columns' in ``without`` the
    one-column net of §3.2 (on ``devices[0]``), built without the other tricks ``without`` names
    (``common.WITHOUT``; 'augmentation' is the loader's business, not the model's)."""
    tricks = tuple(t for t in without if t in MODEL_TRICKS)
    if "columns" in without:
        return OneColumnAlexNet(num_classes, preset, device=devices[0], seed=seed, without=tricks)
    return AlexNet(num_classes, preset, devices=devices, seed=seed, without=tricks)


def build_model(config: dict, devices=None):
    """Rebuild a model from its ``config`` (``model.config``, or as stored in a checkpoint).

    ``devices``: a pair for AlexNet, or one device (or a pair, whose first is used) for the
    one-column net; default ``minialex.default_devices()``. A class minialex no longer has is
    rebuilt as the class that reads its checkpoints now (legacy.py).
    """
    cfg = dict(config)
    name = cfg.pop("class", "AlexNet")
    name = RENAMED_CLASSES.get(name, name)
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(MODEL_CLASSES)}")
    cls = MODEL_CLASSES[name]
    spec = cfg.pop("preset_spec", None)    # the full numbers win over the name (retuned presets)
    cfg["preset"] = get_preset(spec if spec is not None else cfg["preset"])
    cfg["dtype"] = numpy.dtype(cfg.get("dtype", "float32"))
    if cls is AlexNet:
        cfg["devices"] = devices
    else:
        if devices is not None and not isinstance(devices, str) and hasattr(devices, "__len__"):
            devices = devices[0]
        cfg["device"] = devices
    return cls(**cfg)


__all__ = [
    "AlexNet", "Column", "OneColumnAlexNet", "PRESETS", "Preset", "LayerShape", "WITHOUT",
    "build_network", "check_without",
    "PAPER_INPUT_SIZE", "DROPOUT_SITES", "INIT_SCHEMES", "LayerRow", "build_model",
    "count_parameters", "describe", "get_preset", "initial_parameters", "parameter_shapes",
    "table", "upgrade_state",
]
