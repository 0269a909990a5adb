"""Bundled losskit plugin ``token_box``: box losses on a language model's coordinate tokens.

Registers ``token_box`` (on logits) and ``linear_token_box`` (on hidden states + the LM
head's weight, gathering only the coordinate rows). A grounding model that writes boxes as
text (Qwen2-VL digits, Florence-2 / PaliGemma location tokens) gets L1 / IoU-family box
terms (``losskit_plugins.boxes``) and the Number Token Loss terms on the expected
coordinates of its own tokens, next to ``token_ce`` and with no box head.
"""

from __future__ import annotations

from typing import Any

import losskit
from losskit.bench import BenchSpec
from losskit_plugins.tokens.baselines import plain_cross_entropy, plain_linear_cross_entropy
from losskit_plugins.token_box.cases import SIZES, LINEAR_SIZES, linear_token_box_inputs, token_box_inputs
from losskit_plugins.token_box.config import LinearTokenBoxConfig, TokenBoxConfig
from losskit_plugins.token_box.loss import LinearTokenBoxLoss, TokenBoxLoss
from losskit_plugins.token_box.vocab import from_tokenizer

__all__ = ["LinearTokenBoxConfig", "LinearTokenBoxLoss", "TokenBoxConfig", "TokenBoxLoss", "from_tokenizer", "register_losses"]


@losskit.hookimpl
def register_losses(register: Any) -> None:
    """Register ``token_box`` and ``linear_token_box``.

    Their bench baselines are the plain cross-entropy on the same inputs (``F.cross_entropy``
    on the logits, or after the LM-head matmul): the cost of the CE step the box loss sits beside.
    """
    register(
        "token_box",
        TokenBoxLoss,
        config=TokenBoxConfig,
        bench=BenchSpec(
            example_inputs=token_box_inputs,
            sizes=SIZES,
            baselines={"token_ce_beside_it": plain_cross_entropy},
            throughput_keys=("B", "T"),
            throughput_unit="tokens",
        ),
    )
    register(
        "linear_token_box",
        LinearTokenBoxLoss,
        config=LinearTokenBoxConfig,
        bench=BenchSpec(
            example_inputs=linear_token_box_inputs,
            sizes=LINEAR_SIZES,
            baselines={"linear_ce_beside_it": plain_linear_cross_entropy},
            throughput_keys=("B", "T"),
            throughput_unit="tokens",
        ),
    )
