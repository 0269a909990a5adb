"""``token_box`` in use: beside ``token_ce`` in a ``mixture``, under a ``Curriculum``, in the Hugging Face
``compute_loss_func`` path with a tiny Qwen2 model built from a config, configs from locally built
tokenizers, the conformance kit, and a run on meta tensors (no value is read)."""

from __future__ import annotations

import tempfile

import pytest
import torch

import losskit
from losskit.testing import check_loss
from losskit_plugins.token_box import from_tokenizer

BOX_TEXT = "the cat is at <|box_start|>(12,305),(640,999)<|box_end|>"


def _grounding_batch(tok, n: int = 4, t: int = 32):
    ids = tok(BOX_TEXT, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids + [0] * (t - len(ids))] * n)
    labels = input_ids.clone()
    labels[:, :4] = -100  # the prompt
    labels[:, len(ids):] = -100  # padding
    return input_ids, labels


def test_from_tokenizer_qwen2_vl(qwen_like_tokenizer) -> None:
    tok = qwen_like_tokenizer
    cfg = from_tokenizer(tok, "qwen2_vl", iou_loss="ciou")
    vocab = tok.get_vocab()
    assert cfg.digit_token_ids == [vocab[str(d)] for d in range(10)]
    assert (cfg.box_start_id, cfg.box_end_id) == (vocab["<|box_start|>"], vocab["<|box_end|>"])
    assert cfg.separator_ids == sorted(vocab[c] for c in "(,)") and cfg.iou_loss == "ciou"
    _, labels = _grounding_batch(tok)
    logits = torch.randn(*labels.shape, len(tok))
    out = losskit.build(cfg).compute(logits, labels)
    assert int(out.metrics["num_boxes"]) == 4 and float(out.metrics["malformed_share"]) == 0.0
    assert type(from_tokenizer(tok, "qwen2_vl", linear=True)).__name__ == "LinearTokenBoxConfig"


def test_from_tokenizer_loc_tokens(ref) -> None:
    bins = [f"<loc_{k}>" for k in range(8)]
    tok = ref.word_level_tokenizer(["[UNK]", "cat"] + bins)
    cfg = from_tokenizer(tok, "loc_tokens", num_bins=8)
    assert (cfg.style, cfg.loc_first_id, cfg.num_bins, cfg.coord_range) == ("loc_tokens", 2, 8, (0.0, 1.0))
    shuffled = ref.word_level_tokenizer(["[UNK]", "<loc_3>", "cat"] + [b for b in bins if b != "<loc_3>"])
    ids = from_tokenizer(shuffled, "loc_tokens", num_bins=8).loc_token_ids
    assert ids == [shuffled.get_vocab()[b] for b in bins]
    with pytest.raises(ValueError, match=r"tok: style 'loc_tokens' needs the token '<loc_8>'"):
        from_tokenizer(tok, "loc_tokens", num_bins=9)


def test_from_tokenizer_errors(ref) -> None:
    no_box = ref.word_level_tokenizer(["[UNK]"] + [str(d) for d in range(10)] + ["(", ",", ")"])
    with pytest.raises(ValueError, match=r"tok: style 'qwen2_vl' needs the token '<\|box_start\|>'"):
        from_tokenizer(no_box, "qwen2_vl")
    with pytest.raises(ValueError, match="style: expected 'qwen2_vl' or 'loc_tokens'"):
        from_tokenizer(no_box, "florence")  # type: ignore[arg-type]
    with pytest.raises(losskit.errors.ConfigError, match="iou_weight"):
        from_tokenizer(ref.word_level_tokenizer(["[UNK]", "<loc_0>", "<loc_1>"]), "loc_tokens", num_bins=2, iou_weight=-1)


def test_mixture_beside_token_ce_under_a_curriculum(qwen_like_tokenizer) -> None:
    tok = qwen_like_tokenizer
    box = from_tokenizer(tok, "qwen2_vl").model_dump()
    mixture = losskit.build(
        {"name": "mixture", "terms": {"lm": {"name": "token_ce"}, "box": {"name": "token_box", **box}},
         "weights": {"box": 0.0}}
    )
    curriculum = losskit.Curriculum(mixture, {"weights.box": {"kind": "linear", "start": 0.0, "end": 2.0, "steps": 4}})
    _, labels = _grounding_batch(tok)
    logits = torch.randn(*labels.shape, len(tok), generator=torch.Generator().manual_seed(0), requires_grad=True)
    ce = losskit.build("token_ce")(logits, labels)
    term = losskit.build(from_tokenizer(tok, "qwen2_vl"))(logits, labels)
    for step, lam in [(0, 0.0), (2, 1.0), (4, 2.0), (9, 2.0)]:
        curriculum.step(step)
        out = mixture.compute(lm={"logits": logits, "labels": labels}, box={"logits": logits, "labels": labels})
        torch.testing.assert_close(out.loss, ce + lam * term)
    (grad,) = torch.autograd.grad(out.loss, logits)
    (want,) = torch.autograd.grad(ce + 2.0 * term, logits)
    torch.testing.assert_close(grad, want)


def test_hugging_face_compute_loss_func(qwen_like_tokenizer) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    tok = qwen_like_tokenizer
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    input_ids, labels = _grounding_batch(tok, n=8)
    token_ce, token_box = losskit.build("token_ce"), losskit.build(from_tokenizer(tok, "qwen2_vl"))
    seen = []

    def compute_loss_func(outputs, labels, num_items_in_batch=None):
        box = token_box.compute(outputs.logits, labels)
        seen.append(box.metrics["mean_iou"].item())
        return token_ce(outputs.logits, labels, num_items_in_batch=num_items_in_batch) + box.loss

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=True, report_to=[], save_strategy="no",
                             disable_tqdm=True, per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2)
    data = [{"input_ids": i, "labels": lab} for i, lab in zip(input_ids, labels)]
    Trainer(model=model, args=args, train_dataset=data, compute_loss_func=compute_loss_func).train()
    assert len(seen) == 3 and all(0.0 <= v <= 1.0 for v in seen)
    with torch.no_grad():
        logits = model(input_ids=input_ids[:2]).logits
        hidden = model.model(input_ids=input_ids[:2]).last_hidden_state
    linear = losskit.build(from_tokenizer(tok, "qwen2_vl", linear=True))
    torch.testing.assert_close(linear(hidden, model.lm_head.weight, labels[:2]), token_box(logits, labels[:2]))


@pytest.mark.parametrize("name", ["token_box", "linear_token_box"])
def test_conformance(name) -> None:
    check_loss(name)


def test_meta_tensors_read_no_values() -> None:
    from losskit_plugins.token_box.cases import box_labels

    labels = box_labels(2, 40, 50, torch.Generator().manual_seed(0)).to("meta")
    logits = torch.empty(2, 40, 50, device="meta", requires_grad=True)
    out = losskit.build("token_box", ntl_mse_weight=1.0).compute(logits, labels)
    out.loss.backward()
    assert out.loss.device.type == "meta" and logits.grad.shape == logits.shape
