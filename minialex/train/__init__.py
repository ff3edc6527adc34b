"""Training AlexNet: the loop behind ``python cli.py train`` (§5).

    config.py      a run's options (TrainConfig) and what it gives back (TrainResult)
    loop.py        the Trainer: set up, then for each epoch the steps, validation, the schedule
                   and a checkpoint; ``train(config)`` runs one
    setup.py       a run's devices, preset, precision, data and the data's measured recipe
    resume.py      what a checkpoint keeps for ``--resume``, and how a run continues from it
    run_folder.py  where a run's folder goes, and what a new run may write over
    evaluate.py    top-1 / top-5 error, class probabilities, the last hidden layer's features
    rng_state.py   the dropout generators' states, for an exact resume
    stop_flag.py   Ctrl-C as a clean stop at the end of a step
    world.py       the processes that train together: one, unless a tool gives it more
"""

from .loop import TrainConfig, Trainer, TrainResult, train
from .resume import TrainingError
from .world import World

__all__ = ["TrainConfig", "Trainer", "TrainResult", "TrainingError", "World", "train"]
