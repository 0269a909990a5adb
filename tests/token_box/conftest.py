"""Brute-force float64 reference of ``token_box`` and hypothesis strategies for its tests.

The reference parses each label row with a sequential Python scan (no tensors), computes
each coordinate token's restricted softmax with explicit ``exp`` sums, adds digits by place
value one by one, and scores each box with the ``bbox`` family's own brute-force reference
(``tests/boxes/conftest.py``: corners, clamp, the IoU formulas written from the papers),
loaded from its file. Autograd through this gives the reference gradient.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import strategies as st
from torch import Tensor

IGNORE = -100
ZERO = torch.zeros((), dtype=torch.float64)

_spec = importlib.util.spec_from_file_location("boxes_reference", Path(__file__).parents[1] / "boxes" / "conftest.py")
boxes_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(boxes_ref)


def parse_row(row: list[int], cfg: dict) -> tuple[list[tuple[int, list[list[int]]]], int]:
    """``([(anchor, [positions of each of the 4 numbers])], malformed)`` of one label row."""
    if cfg.get("style", "digits") == "loc_tokens":
        loc = set(coordinate_ids(cfg))
        boxes, bad, i = [], 0, 0
        while i < len(row):
            j = i
            while j < len(row) and row[j] in loc:
                j += 1
            for a in range(i, j, 4):
                if a + 4 <= j:
                    boxes.append((a, [[a + k] for k in range(4)]))
                else:
                    bad += 1
            i = max(j, i + 1)
        return boxes, bad
    digits = set(cfg["digit_token_ids"])
    start, end, seps = cfg["box_start_id"], cfg["box_end_id"], cfg.get("separator_ids")
    boxes, bad, i = [], 0, 0
    while i < len(row):
        if row[i] != start:
            i += 1
            continue
        numbers, current, foreign, j = [], [], False, i + 1
        while j < len(row) and row[j] not in (start, end):
            if row[j] in digits:
                current.append(j)
            else:
                if current:
                    numbers.append(current)
                current = []
                foreign |= (row[j] not in seps) if seps else row[j] == IGNORE
            j += 1
        if current:
            numbers.append(current)
        closed = j < len(row) and row[j] == end
        if closed and not foreign and len(numbers) == 4:
            boxes.append((i, numbers))
        else:
            bad += 1
        i = j + 1 if closed else j
    return boxes, bad


def coordinate_ids(cfg: dict) -> list[int]:
    if cfg.get("style", "digits") == "digits":
        return list(cfg["digit_token_ids"])
    if cfg.get("loc_token_ids") is not None:
        return list(cfg["loc_token_ids"])
    return list(range(cfg["loc_first_id"], cfg["loc_first_id"] + cfg["num_bins"]))


def token_value(k: int, size: int, cfg: dict) -> float:
    """Value of coordinate token ``k`` of ``size``: the digit, or the bin's position in [0, 1]."""
    if cfg.get("style", "digits") == "digits":
        return float(k)
    return (k + 0.5) / size if cfg.get("bin_position", "center") == "center" else k / (size - 1)


def restricted_softmax(row: Tensor, ids: list[int]) -> list[Tensor]:
    exps = [torch.exp(row[i] - max(float(row[j].detach()) for j in ids)) for i in ids]
    total = sum(exps)
    return [e / total for e in exps]


def reference(logits: Tensor, labels: Tensor, cfg: dict, *, shift: bool, num_boxes=None) -> dict:
    """``{"loss", "parts", "mean_iou", "num_boxes", "malformed"}`` of ``token_box``, brute force."""
    ids = coordinate_ids(cfg)
    k = len(ids)
    values = [token_value(i, k, cfg) for i in range(k)]
    lo, hi = cfg.get("coord_range", (0.0, 1000.0))
    digits = cfg.get("style", "digits") == "digits"
    x = logits.double().reshape(-1, logits.shape[-1])
    lab = labels.reshape(-1, labels.shape[-1]) if labels.dim() == 2 else labels.reshape(1, -1)
    if shift:
        lab = torch.cat([lab[:, 1:], torch.full_like(lab[:, :1], IGNORE)], 1)
    t = lab.shape[1]
    fmt, beta, eps = cfg.get("box_format", "xyxy"), cfg.get("smooth_l1_beta", 0.0), cfg.get("eps", 1e-7)
    kind = cfg.get("iou_loss", "giou")
    per_box = {"l1": [], kind: []}  # an iou_loss of "none" stays empty
    per_token = {"ntl_mse": [], "ntl_wasserstein": []}
    ious, malformed, none = [], 0, [[ZERO] * t for _ in range(lab.shape[0])]
    w = {"l1": cfg.get("l1_weight", 1.0), kind: cfg.get("iou_weight", 1.0),
         "ntl_mse": cfg.get("ntl_mse_weight", 0.0), "ntl_wasserstein": cfg.get("ntl_wasserstein_weight", 0.0)}
    for r, row in enumerate(lab.tolist()):
        boxes, bad = parse_row(row, cfg)
        malformed += bad
        for anchor, numbers in boxes:
            pred, target = [], []
            for positions in numbers:
                p_num, t_num = ZERO, 0.0
                for j, pos in enumerate(positions):
                    place = 10.0 ** (len(positions) - j - 1) if digits else 1.0
                    probs = restricted_softmax(x[r * t + pos], ids)
                    expected = sum(p * v for p, v in zip(probs, values))
                    label = values[ids.index(row[pos])]
                    p_num, t_num = p_num + place * expected, t_num + place * label
                    token = {"ntl_mse": (expected - label) ** 2,
                             "ntl_wasserstein": sum(p * abs(v - label) for p, v in zip(probs, values))}
                    for name, value in token.items():
                        per_token[name].append(value)
                        none[r][pos] = none[r][pos] + w[name] * value
                scale = (lambda v: (v - lo) / (hi - lo)) if digits else (lambda v: v)
                pred.append(scale(p_num))
                target.append(scale(torch.tensor(t_num, dtype=torch.float64)))
            pc = boxes_ref.clamp_box(boxes_ref.corners(pred, fmt))
            tc = boxes_ref.clamp_box(boxes_ref.corners(target, fmt))
            term, iou = boxes_ref.iou_term(pc, tc, kind if kind != "none" else "iou", eps)
            ious.append(iou)
            box = {"l1": boxes_ref.coordinate_term(pred, target, beta)} | ({kind: term} if kind != "none" else {})
            for name, value in box.items():
                per_box[name].append(value)
                none[r][anchor] = none[r][anchor] + w[name] * value
    n_boxes, n_tokens = len(ious), len(per_token["ntl_mse"])
    reduction = cfg.get("reduction", "mean")
    parts = {}
    for name, vals in {**per_box, **per_token}.items():
        if w[name] == 0 or name == "none":
            continue
        total = sum(vals) if vals else ZERO
        if reduction == "mean":
            divisor = (num_boxes if num_boxes is not None else n_boxes) if name in per_box else n_tokens
            total = total / max(divisor, 1)
        parts[name] = total
    if reduction == "none":
        loss = torch.stack([torch.stack(r) for r in none]).reshape(labels.shape)
        parts = None
    else:
        loss = sum(w[name] * v for name, v in parts.items()) if parts else ZERO
    return {"loss": loss, "parts": parts, "mean_iou": sum(ious) / max(n_boxes, 1), "num_boxes": n_boxes,
            "malformed": malformed}


@dataclass
class Problem:
    """A drawn token_box problem."""

    config: dict
    logits: Tensor
    labels: Tensor
    shift: bool
    extra: dict = field(default_factory=dict)


def _write_box(draw, cfg: dict, skip_malformed: bool) -> list[int]:
    ids = coordinate_ids(cfg)
    if cfg["style"] == "loc_tokens":
        count = 4 if not skip_malformed else draw(st.sampled_from([4, 4, 4, 3, 5]))
        return [ids[draw(st.integers(0, len(ids) - 1))] for _ in range(count)]
    seps = cfg.get("separator_ids") or [cfg["free_text"][0]]
    numbers = 4 if not skip_malformed else draw(st.sampled_from([4, 4, 4, 3, 5]))
    out = [cfg["box_start_id"]]
    for i in range(numbers):
        out += [ids[draw(st.integers(0, 9))] for _ in range(draw(st.integers(1, 3)))]  # 1-3 digits
        if i < numbers - 1:
            out.append(draw(st.sampled_from(seps)))
    if skip_malformed and draw(st.integers(0, 5)) == 0:
        return out  # unterminated
    return out + [cfg["box_end_id"]]


@st.composite
def problems(draw, *, style: str | None = None) -> Problem:
    """A vocabulary (random ids), labels with boxes between text and ignored tokens, logits, a config."""
    style = style or draw(st.sampled_from(["digits", "loc_tokens"]))
    bins = draw(st.integers(2, 6))
    n_coord = 10 if style == "digits" else bins
    v = n_coord + 2 + draw(st.integers(2, 5))
    perm = draw(st.permutations(list(range(v))))
    coord, rest = list(perm[:n_coord]), list(perm[n_coord:])
    cfg: dict = {"style": style}
    if style == "digits":
        cfg |= {"digit_token_ids": coord, "box_start_id": rest[0], "box_end_id": rest[1]}
        text = rest[2:]
        if draw(st.booleans()):
            cfg["separator_ids"] = text[:1]
        cfg["coord_range"] = draw(st.sampled_from([(0.0, 1000.0), (0.0, 100.0), (-50.0, 999.0)]))
    else:
        consecutive = draw(st.booleans())
        coord = list(range(v - bins, v)) if consecutive else coord
        text = [i for i in range(v) if i not in coord]
        cfg |= ({"loc_first_id": v - bins, "num_bins": bins} if consecutive else {"loc_token_ids": coord})
        cfg["bin_position"] = draw(st.sampled_from(["center", "edge"]))
    skip = draw(st.booleans())
    cfg |= {
        "on_malformed": "skip" if skip else "raise",
        "box_format": draw(st.sampled_from(["xyxy", "xywh", "cxcywh"])),
        "iou_loss": draw(st.sampled_from(["none", "iou", "giou", "diou", "ciou"])),
        "iou_weight": draw(st.sampled_from([0.0, 1.0, 2.0])),
        "l1_weight": draw(st.sampled_from([0.0, 1.0, 5.0])),
        "smooth_l1_beta": draw(st.sampled_from([0.0, 0.05])),
        "ntl_mse_weight": draw(st.sampled_from([0.0, 0.5])),
        "ntl_wasserstein_weight": draw(st.sampled_from([0.0, 1.0])),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "free_text": text,
    }
    b, three_d = draw(st.integers(1, 3)), draw(st.booleans())
    rows = []
    for _ in range(b):
        row: list[int] = [IGNORE]  # the shift drops each row's first label
        for _ in range(draw(st.integers(0, 3))):
            row += [draw(st.sampled_from(text + [IGNORE])) for _ in range(draw(st.integers(0, 3)))]
            row += _write_box(draw, cfg, skip)
        rows.append(row)
    t = max([len(r) for r in rows] + [1]) + draw(st.integers(0, 2))
    labels = torch.tensor([r + [IGNORE] * (t - len(r)) for r in rows], dtype=torch.long).reshape(b, t)
    if not three_d:
        labels = labels.reshape(-1)
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.5, 3.0]))
    logits = torch.randn(*labels.shape, v, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    cfg.pop("free_text")
    shift = draw(st.sampled_from([None, True, False]))
    if shift is not None:
        cfg["shift"] = shift
    return Problem(cfg, logits, labels, three_d if shift is None else shift)


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The reference helpers of the token_box tests."""
    return SimpleNamespace(
        reference=reference, problems=problems, parse_row=parse_row, boxes=boxes_ref, IGNORE=IGNORE,
        word_level_tokenizer=word_level_tokenizer,
    )


def word_level_tokenizer(tokens: list[str]):
    """A ``transformers.PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model built here.

    Ids follow ``tokens``' order; text is split into single punctuation marks and digits
    (as Qwen2 splits numbers) and words; nothing is downloaded.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation()]
    )
    specials = [t for t in tokens if t.startswith("<") or t == "[UNK]"]
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tok.add_special_tokens({"additional_special_tokens": specials})
    return tok


@pytest.fixture(scope="session")
def qwen_like_tokenizer():
    """Digits, Qwen2-VL's box tokens, punctuation and a few words, in a shuffled id order."""
    words = ["[UNK]", "the", "cat", "(", "<|box_start|>", "7", ",", "0", "3", "1", ")", "9", "<|box_end|>",
             "2", "4", "is", "5", "6", "8", "at", "<|im_end|>"]
    return word_level_tokenizer(words)
