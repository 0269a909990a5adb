"""``token_box`` (on logits) and ``linear_token_box`` (on hidden states + LM head): box losses on coordinate tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import losskit
from losskit.checks import check_finite, check_float, check_size, compute_dtype, value_checks_enabled
from losskit_plugins.boxes.inputs import check_num_boxes
from losskit_plugins.token_box.config import LinearTokenBoxConfig, TokenBoxConfig
from losskit_plugins.token_box.output import box_output, raise_malformed
from losskit_plugins.token_box.parse import DeviceVocabulary, device_vocabulary, parse_boxes
from losskit_plugins.token_box.terms import box_terms, token_values
from losskit_plugins.tokens.inputs import flat_labels, flat_rows

__all__ = ["LinearTokenBoxLoss", "TokenBoxLoss"]


class _CoordinateLoss(losskit.Loss[TokenBoxConfig]):
    """What both variants share: labels -> boxes, coordinate logits ``[N, K]`` -> output."""

    config_class = TokenBoxConfig

    def _vocabulary(self, num_classes: int, device: torch.device, inputs_name: str) -> DeviceVocabulary:
        """The coordinate vocabulary on ``device``, its ids checked against the vocabulary size (no data read)."""
        cfg = self.config
        ids = cfg.coordinate_ids()
        field = "digit_token_ids" if cfg.style == "digits" else ("loc_token_ids" if cfg.loc_token_ids else "loc_first_id")
        extra = [cfg.box_start_id, cfg.box_end_id] if cfg.style == "digits" else []
        for name, i in [(field, max(ids))] + list(zip(("box_start_id", "box_end_id"), extra)):
            if i >= num_classes:
                raise ValueError(f"{name}: token id {i} is outside the vocabulary of {inputs_name} (V = {num_classes})")
        seps = tuple(cfg.separator_ids) if cfg.style == "digits" and cfg.separator_ids else None
        return device_vocabulary(tuple(ids), seps, num_classes, device)

    def _finish(
        self, z: Tensor, labels: object, rows_shape: torch.Size, vocab: DeviceVocabulary,
        inputs_name: str, num_boxes: object,
    ) -> losskit.LossOutput:
        """Parse ``labels``, run the terms on the coordinate logits ``z [N, K]`` and reduce."""
        cfg = self.config
        normalizer = None
        if num_boxes is not None:
            if cfg.reduction != "mean":
                raise ValueError(f"num_boxes: only used by reduction='mean', got reduction={cfg.reduction!r}")
            normalizer = check_num_boxes(num_boxes, z.device)
        flat = flat_labels(
            labels, rows_shape, vocab.table.shape[0], inputs_name=inputs_name, device=z.device, shift=cfg.shift,
            ignore_index=cfg.ignore_index,
        )
        shifted = torch.where(flat.targets.valid, flat.targets.index, cfg.ignore_index)
        grid = shifted.reshape(flat.shape)  # [B, T], or [N] read as one row
        layout = parse_boxes(cfg, grid if grid.dim() == 2 else grid[None], vocab)
        checks = value_checks_enabled(cfg.check_inputs, z.device)
        if checks:
            check_finite(**{inputs_name: z})
            if cfg.on_malformed == "raise":
                raise_malformed(layout, flat.shape)
        terms = box_terms(cfg, z, layout, token_values(cfg, vocab.ids.numel(), z.dtype, z.device))
        return box_output(cfg, terms, layout, flat.shape, normalizer)


class TokenBoxLoss(_CoordinateLoss):
    """IoU / L1 and Number-Token losses on a language model's coordinate tokens (``token_box``).

    Call: ``loss(logits [B, T, V] or [N, V], labels [B, T] or [N], *, num_boxes=None)``.

    Labels follow ``token_ce`` (Hugging Face ``ForCausalLMLoss``): 3-D logits are shifted
    (position t predicts ``labels[t + 1]``) unless ``shift`` says otherwise, and
    ``ignore_index`` marks unsupervised tokens. The boxes written in the labels (digits
    between box start/end ids, or runs of location tokens; see ``config.style``) are
    found without a host synchronisation; for each, the expected coordinates under the
    softmax restricted to the coordinate tokens give a predicted box, scored against the
    labelled one by L1 / smooth-L1 and the IoU family of ``bbox``; NTL-MSE and
    NTL-Wasserstein score each coordinate token. Only the K coordinate columns of the
    logits are read.

    - ``"mean"``: box terms summed over boxes / ``num_boxes`` (a number or one-element
      tensor, e.g. all-reduced over ranks; default: the number of well-formed boxes, at
      least 1), NTL terms summed over coordinate tokens / their number (at least 1).
    - ``"sum"``: sums. ``"none"``: ``[B, T]`` (labels' shape, after the shift): each box's
      terms at its first position, NTL terms at their tokens, zero elsewhere.

    A batch with no box gives a zero connected to the graph. ``compute`` returns the
    parts ``l1``, the IoU term under its name (``giou``...), ``ntl_mse``,
    ``ntl_wasserstein`` (those with a weight > 0, unweighted, reduced like the loss;
    ``loss == sum(weight * part)``) and the metrics ``mean_iou`` (expected boxes),
    ``mean_iou_argmax`` (boxes decoded by argmax over the coordinate tokens),
    ``num_boxes`` and ``malformed_share`` (malformed / all boxes in the labels).
    """

    def compute(self, logits: Tensor, labels: Tensor, *, num_boxes: Tensor | float | None = None) -> losskit.LossOutput:
        """Loss, parts and metrics of ``logits [B, T, V] / [N, V]`` against ``labels``; see the class docstring."""
        rows = flat_rows(logits, "logits", "[B, T, V] or [N, V]")  # [N, V] (a view)
        vocab = self._vocabulary(rows.shape[1], rows.device, "logits")
        z = rows.index_select(1, vocab.ids).to(compute_dtype(logits))  # [N, K]: the only columns read
        return self._finish(z, labels, logits.shape[:-1], vocab, "logits", num_boxes)


class LinearTokenBoxLoss(_CoordinateLoss):
    """``token_box`` on the last hidden states and the LM head (``linear_token_box``): no logits at all.

    Call: ``loss(hidden [B, T, H] or [N, H], weight [V, H], labels, *, bias=None, num_boxes=None)``.

    Gathers the K coordinate rows of ``weight`` (and ``bias [V]``) and computes
    ``hidden @ weight[ids].T`` ``[N, K]``; everything else is ``token_box`` (same config,
    parts and metrics). Pair it with ``linear_token_ce`` for an LM step that never
    materialises ``[N, V]`` logits. Gradients reach ``hidden``, the K rows of ``weight``
    and of ``bias``.
    """

    config_class = LinearTokenBoxConfig

    def compute(
        self,
        hidden: Tensor,
        weight: Tensor,
        labels: Tensor,
        *,
        bias: Tensor | None = None,
        num_boxes: Tensor | float | None = None,
    ) -> losskit.LossOutput:
        """Loss, parts and metrics; see the class docstring and :class:`TokenBoxLoss`."""
        rows = flat_rows(hidden, "hidden", "[B, T, H] or [N, H]")  # [N, H]
        weight = check_float(weight, "weight", 2, layout="[V, H]")
        check_size(weight, "weight", 1, rows.shape[1], "the hidden size of hidden")
        if bias is not None:
            bias = check_float(bias, "bias", 1, layout="[V]")
            check_size(bias, "bias", 0, weight.shape[0], "the vocabulary size of weight")
        vocab = self._vocabulary(weight.shape[0], rows.device, "weight")
        dtype = compute_dtype(hidden, weight, bias)
        head = weight.index_select(0, vocab.ids)  # [K, H]: the coordinate rows only
        z = F.linear(rows, head, None if bias is None else bias.index_select(0, vocab.ids)).to(dtype)  # [N, K]
        return self._finish(z, labels, hidden.shape[:-1], vocab, "hidden", num_boxes)
