"""The reference dual-encoder trainer behind ``losskit train``.

It trains an image–text dual encoder with any registered loss, built only through
the registry (``losskit.build(config.loss)``)::

    from losskit.train import TrainConfig, train
    result = train(TrainConfig(steps=100))
    print(result.before, result.after)

See docs/trainer.md for the configuration reference, real data formats and torchrun.
"""

from losskit.train.config import TrainConfig, load_train_config
from losskit.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_train_config", "train"]
