"""Train or finetune SAM-family models on images with instance labels.

>>> import napari_sam as ns
>>> result = ns.train("images/*.tif", "labels/*.tif", model="demo", out="my_model.pt", epochs=5)
>>> model = ns.load_model("my_model.pt")

See :func:`train` for the options, :mod:`.prompts` for the prompt simulation,
:mod:`.losses` for the loss and :mod:`.demo` for the command that retrains the bundled demo
model.

Modules: ``config`` (TrainConfig), ``data`` (items), ``prompts``, ``losses``, ``trainer``
(one optimisation step, training state), ``evaluation``, ``checkpoint`` (checkpoint,
checkpoint metadata, training state files), ``run`` (train, the epoch loop, resume), and the
demo recipe: ``demo`` (command), ``demo_data`` (synthetic stream), ``demo_quality``.
"""

from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import ImagePair, TrainItem, load_pairs, make_items, prepare_item, split_items
from .evaluation import evaluate
from .losses import LossWeights, dice_loss, focal_loss, mask_iou, sam_loss
from .run import TrainResult, run_training, train
from .trainer import Trainer

__all__ = [
    "ImagePair",
    "LossWeights",
    "TrainConfig",
    "TrainItem",
    "TrainResult",
    "Trainer",
    "dice_loss",
    "evaluate",
    "focal_loss",
    "load_pairs",
    "make_items",
    "mask_iou",
    "prepare_item",
    "run_training",
    "sam_loss",
    "save_checkpoint",
    "split_items",
    "train",
]
