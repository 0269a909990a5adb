"""Configuration of ``token_box`` / ``linear_token_box``: the coordinate vocabulary and the term weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

import losskit
from losskit.checks import CheckInputs
from losskit_plugins.boxes.config import BoxLossConfig
from losskit_plugins.boxes.inputs import BoxFormat
from losskit_plugins.tokens.config import TokenCEConfig

__all__ = ["LinearTokenBoxConfig", "Style", "TokenBoxConfig"]

Style = Literal["digits", "loc_tokens"]

_BOX = BoxLossConfig.model_fields  # the box terms' fields are bbox's, reused as they are
_TOKENS = TokenCEConfig.model_fields  # and the label conventions token_ce's


class TokenBoxConfig(losskit.LossConfig):
    """Configuration of ``token_box`` and ``linear_token_box``.

    The defaults describe a toy 12-token layout (digits ``0``-``9`` at ids 0-9, box
    start 10, box end 11); build real configs with
    :func:`~losskit_plugins.token_box.from_tokenizer` or give the ids.
    """

    style: Style = Field(
        "digits",
        description="How a box is written: 'digits' (numbers digit by digit between box start/end ids, as "
        "Qwen2-VL) or 'loc_tokens' (one location token per coordinate, as Florence-2 / PaliGemma).",
    )
    digit_token_ids: list[int] | None = Field(
        list(range(10)), description="digits: the ids of the tokens '0'..'9', in this order (exactly ten)."
    )
    box_start_id: int | None = Field(10, ge=0, description="digits: id of the box start token (<|box_start|>).")
    box_end_id: int | None = Field(11, ge=0, description="digits: id of the box end token (<|box_end|>).")
    separator_ids: list[int] | None = Field(
        None,
        description="digits: ids allowed between the numbers of a box ('(', ',', '),(' ...); null allows any "
        "token that is not a digit. Another token inside a box makes the box malformed.",
    )
    loc_token_ids: list[int] | None = Field(
        None, description="loc_tokens: the ids of the bin tokens <loc_0>, <loc_1>, ... in bin order."
    )
    loc_first_id: int | None = Field(
        None, ge=0, description="loc_tokens: id of <loc_0> when the bins have consecutive ids (with num_bins)."
    )
    num_bins: int | None = Field(None, ge=2, le=1 << 20, description="loc_tokens: number of bins with loc_first_id.")
    bin_position: Literal["center", "edge"] = Field(
        "center",
        description="loc_tokens: bin k stands for low + (k + 1/2) (high - low) / n ('center', Florence-2) or "
        "low + k (high - low) / (n - 1) ('edge', both ends exact).",
    )
    coord_range: tuple[float, float] = Field(
        (0.0, 1000.0),
        description="[low, high]: range of the written numbers (digits; Qwen2-VL: 0-1000) or of the bins "
        "(loc_tokens). Box terms see coordinates as (value - low) / (high - low), fractions of the image side.",
    )
    box_format: BoxFormat = _BOX["box_format"]
    l1_weight: float = _BOX["l1_weight"]
    smooth_l1_beta: float = _BOX["smooth_l1_beta"]
    iou_loss: Literal["none", "iou", "giou", "diou", "ciou"] = _BOX["iou_loss"]
    iou_weight: float = _BOX["iou_weight"]
    eps: float = _BOX["eps"]
    ntl_mse_weight: float = Field(
        0.0, ge=0.0, le=1e4,
        description="Weight of NTL-MSE (Zausinger et al. 2025): squared error of each coordinate token's expected "
        "value (digit 0-9, or the bin's position in [0, 1]); 0 disables it.",
    )
    ntl_wasserstein_weight: float = Field(
        0.0, ge=0.0, le=1e4,
        description="Weight of NTL-Wasserstein: sum_k p_k |value_k - label value| per coordinate token; 0 disables it.",
    )
    on_malformed: Literal["raise", "skip"] = Field(
        "raise",
        description="A labelled box that is unterminated, holds a foreign or ignored token, or has not 4 numbers: "
        "'raise' a ValueError naming the row (when the value checks run, see check_inputs), or 'skip' it "
        "(counted in metrics['malformed_share']).",
    )
    ignore_index: int = _TOKENS["ignore_index"]
    shift: bool | None = _TOKENS["shift"]
    check_inputs: CheckInputs = "auto"

    @model_validator(mode="after")
    def _vocabulary(self) -> TokenBoxConfig:
        lo, hi = self.coord_range
        if not lo < hi:
            raise ValueError(f"coord_range: expected [low, high] with low < high, got [{lo}, {hi}] (an empty range)")
        if self.style == "digits":
            _digit_vocabulary(self)
        else:
            _loc_vocabulary(self)
        return self

    def coordinate_ids(self) -> list[int]:
        """The ids of the coordinate tokens, in value order (digits 0-9, or bins 0..n-1)."""
        if self.style == "digits":
            return list(self.digit_token_ids or [])
        if self.loc_token_ids is not None:
            return list(self.loc_token_ids)
        return list(range(self.loc_first_id or 0, (self.loc_first_id or 0) + (self.num_bins or 0)))


class LinearTokenBoxConfig(TokenBoxConfig):
    """Configuration of ``linear_token_box``: the same fields as ``token_box``'s (its own class, so a
    config instance names its loss)."""


def _distinct(name: str, ids: list[int]) -> None:
    bad = [i for i in ids if not 0 <= i < 2**31]
    if bad:
        raise ValueError(f"{name}: expected token ids >= 0, got {bad[0]}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: expected distinct token ids, got {ids[:16]}{'...' if len(ids) > 16 else ''}")


def _digit_vocabulary(cfg: TokenBoxConfig) -> None:
    ids = cfg.digit_token_ids
    if ids is None or len(ids) != 10:
        raise ValueError(f"digit_token_ids: expected the ten ids of '0'..'9', got {None if ids is None else len(ids)}")
    if cfg.box_start_id is None or cfg.box_end_id is None:
        raise ValueError("box_start_id: style 'digits' needs box_start_id and box_end_id")
    _distinct("digit_token_ids", ids + [cfg.box_start_id, cfg.box_end_id])
    if set(cfg.separator_ids or []) & set(ids + [cfg.box_start_id, cfg.box_end_id]):
        raise ValueError("separator_ids: a separator cannot be a digit or a box start/end id")


def _loc_vocabulary(cfg: TokenBoxConfig) -> None:
    if (cfg.loc_token_ids is None) == (cfg.loc_first_id is None or cfg.num_bins is None):
        raise ValueError("loc_token_ids: style 'loc_tokens' needs loc_token_ids, or loc_first_id with num_bins (not both)")
    if cfg.loc_token_ids is not None:
        if len(cfg.loc_token_ids) < 2:
            raise ValueError(f"loc_token_ids: expected at least 2 bins, got {len(cfg.loc_token_ids)}")
        _distinct("loc_token_ids", cfg.loc_token_ids)
