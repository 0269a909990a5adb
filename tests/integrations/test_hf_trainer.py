"""losskit inside Hugging Face ``transformers.Trainer`` (real Trainer, tiny models built from configs in code).

- ``token_ce`` as the Trainer's ``compute_loss_func`` on a 2-layer Qwen2-style causal
  LM; gradient accumulation with ``num_items_in_batch`` trains exactly like one large
  batch (same logged losses, same weights), and per-micro-batch means do not.
- ``linear_token_ce`` through the model's hidden states and LM head in a
  ``compute_loss`` override; it trains exactly like ``token_ce`` on full logits.
- ``token_ce`` against transformers' own ``ForCausalLMLoss``: values and gradients.
- A CLIP-style dual encoder trained with ``clip`` in the Trainer; its learnable
  temperature is optimised and saved in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import losskit

from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments
from transformers.loss.loss_utils import ForCausalLMLoss

VOCAB, SEQ = 48, 10


def tiny_qwen2() -> Qwen2ForCausalLM:
    """A 2-layer Qwen2-style causal LM (GQA, RoPE, RMSNorm, SwiGLU), ~30k parameters."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(config)


class PromptedSequences(torch.utils.data.Dataset):
    """Token sequences whose first ``prompt`` tokens are not supervised; prompt lengths vary,
    so micro-batches hold different numbers of supervised tokens."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)
        self.labels = self.input_ids.clone()
        prompt = torch.randint(1, SEQ - 1, (n,), generator=g)
        self.labels[torch.arange(SEQ)[None, :] < prompt[:, None]] = -100

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def args(tmp_path: Path, **overrides) -> TrainingArguments:
    """CPU, no logging services, no saving, SGD (so weights compare without Adam's eps amplifying rounding)."""
    base = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        optim="sgd",
        learning_rate=0.5,
        lr_scheduler_type="constant",
        max_steps=3,
        seed=0,
        data_seed=0,
        remove_unused_columns=False,
    )
    base.update(overrides)
    return TrainingArguments(**base)


def train_losses(trainer: Trainer) -> list[float]:
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def token_ce_loss_func(token_ce: losskit.Loss):
    """``compute_loss_func(outputs, labels, num_items_in_batch)`` for the Trainer."""

    def compute_loss_func(outputs, labels, num_items_in_batch=None):
        return token_ce(outputs.logits, labels, num_items_in_batch=num_items_in_batch)

    return compute_loss_func


# ------------------------------------------------------------------ token_ce vs transformers
def _hf_reference(logits: torch.Tensor, labels: torch.Tensor, num_items) -> torch.Tensor:
    return ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1], num_items_in_batch=num_items)


@given(
    b=st.integers(1, 3),
    t=st.integers(2, 7),
    v=st.integers(2, 9),
    ignored=st.floats(0.0, 0.9),
    give_num_items=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_token_ce_matches_transformers_for_causal_lm_loss(b, t, v, ignored, give_num_items, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    # fp32: ForCausalLMLoss computes in fp32 whatever the input dtype
    logits = (3 * torch.randn(b, t, v, generator=g)).requires_grad_(True)  # [B, T, V]
    labels = torch.randint(0, v, (b, t), generator=g)  # [B, T]
    labels[torch.rand(b, t, generator=g) < ignored] = -100
    labels[0, 1] = 0  # at least one supervised token after the shift
    num_items = int(labels[:, 1:].ne(-100).sum()) + 3 if give_num_items else None  # e.g. a larger accumulated batch

    ours = losskit.build("token_ce")(logits, labels, num_items_in_batch=num_items)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = _hf_reference(logits, labels, None if num_items is None else torch.tensor(num_items))
    (g_ref,) = torch.autograd.grad(ref, logits)

    assert ours.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


def test_token_ce_matches_transformers_in_bf16() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 11, generator=g).to(torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, 11, (2, 6), generator=g)
    labels[:, :2] = -100
    ours = losskit.build("token_ce")(logits, labels)
    ref = _hf_reference(logits, labels, None)  # upcasts to fp32 too
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_token_ce_accepts_num_items_in_batch_as_the_trainer_passes_it() -> None:
    # transformers 5 divides the token count by the tensor/context/sequence-parallel sizes
    # (Trainer._get_num_items_in_batch), so a float tensor reaches compute_loss_func
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    as_int = losskit.build("token_ce")(logits, labels, num_items_in_batch=torch.tensor(12))
    as_float = losskit.build("token_ce")(logits, labels, num_items_in_batch=torch.tensor(12) / 1)
    torch.testing.assert_close(as_float, as_int)
    torch.testing.assert_close(as_float, _hf_reference(logits, labels, torch.tensor(12.0)))


# ------------------------------------------------------------------ Trainer: token_ce
def test_trainer_with_token_ce_learns_and_matches_the_model_own_loss(tmp_path: Path) -> None:
    data = PromptedSequences(8)  # one batch of 8: every step sees the same tokens, so the loss must fall
    model = tiny_qwen2()
    reference = tiny_qwen2()  # same init; trained with the model's built-in loss (ForCausalLMLoss)
    ours = train_losses(
        Trainer(model=model, args=args(tmp_path / "a", max_steps=4), train_dataset=data,
                compute_loss_func=token_ce_loss_func(losskit.build("token_ce")))
    )
    theirs = train_losses(Trainer(model=reference, args=args(tmp_path / "b", max_steps=4), train_dataset=data))
    assert len(ours) == 4 and all(torch.isfinite(torch.tensor(ours)))
    assert ours[-1] < ours[0]
    assert ours == pytest.approx(theirs, rel=1e-5)
    torch.testing.assert_close(params(model), params(reference), rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_with_num_items_equals_one_large_batch(tmp_path: Path) -> None:
    data = PromptedSequences(24)
    runs = {}
    for name, micro, accumulate in [("large", 8, 1), ("accumulated", 2, 4)]:
        model = tiny_qwen2()
        losses = train_losses(
            Trainer(
                model=model,
                args=args(tmp_path / name, per_device_train_batch_size=micro, gradient_accumulation_steps=accumulate),
                train_dataset=data,
                compute_loss_func=token_ce_loss_func(losskit.build("token_ce")),
            )
        )
        runs[name] = (losses, params(model))
    (large_losses, large_params), (acc_losses, acc_params) = runs["large"], runs["accumulated"]
    assert len(large_losses) == 3
    assert acc_losses == pytest.approx(large_losses, rel=1e-5)
    torch.testing.assert_close(acc_params, large_params, rtol=1e-5, atol=1e-6)

    # the control: averaging each micro-batch on its own (no num_items_in_batch) is NOT the large batch
    model = tiny_qwen2()
    token_ce = losskit.build("token_ce")
    naive = Trainer(
        model=model,
        args=args(tmp_path / "naive", per_device_train_batch_size=2, gradient_accumulation_steps=4),
        train_dataset=data,
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: token_ce(outputs.logits, labels) / 4,
    )
    train_losses(naive)
    assert not torch.allclose(params(model), large_params, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ Trainer: linear_token_ce
class LinearTokenCETrainer(Trainer):
    """Computes the loss from the last hidden states and the LM head's weight: no [B, T, V] logits."""

    loss_is_scaled_for_ga = True  # normalised by num_items_in_batch over the accumulated batch

    def __init__(self, *a, loss_fn: losskit.Loss, **kw) -> None:
        super().__init__(*a, **kw)
        self.loss_fn = loss_fn

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        hidden = model.model(input_ids=inputs["input_ids"]).last_hidden_state  # [B, T, H]
        loss = self.loss_fn(hidden, model.lm_head.weight, labels, num_items_in_batch=num_items_in_batch)
        return (loss, {"hidden": hidden}) if return_outputs else loss


def test_trainer_with_linear_token_ce_trains_like_token_ce(tmp_path: Path) -> None:
    data = PromptedSequences(4)  # one accumulated batch (2 x 2): the loss must fall
    fused_model, dense_model = tiny_qwen2(), tiny_qwen2()
    fused = train_losses(
        LinearTokenCETrainer(
            model=fused_model,
            args=args(tmp_path / "fused", per_device_train_batch_size=2, gradient_accumulation_steps=2),
            train_dataset=data,
            loss_fn=losskit.build("linear_token_ce", chunk_size=7),  # several chunks per micro-batch
        )
    )
    dense = train_losses(
        Trainer(
            model=dense_model,
            args=args(tmp_path / "dense", per_device_train_batch_size=2, gradient_accumulation_steps=2),
            train_dataset=data,
            compute_loss_func=token_ce_loss_func(losskit.build("token_ce")),
        )
    )
    assert fused == pytest.approx(dense, rel=1e-5)
    assert fused[-1] < fused[0]
    torch.testing.assert_close(params(fused_model), params(dense_model), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ Trainer: clip
class ClipModel(nn.Module):
    """A dual encoder with its loss inside, so the loss's temperature trains and is saved with the model."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss_fn = losskit.build("clip")

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.encoder(pixel_values, input_ids)
        return {"loss": self.loss_fn(out["image_embeds"], out["text_embeds"]), **out}


def test_trainer_trains_a_dual_encoder_with_clip_and_its_temperature(tmp_path: Path, dual_encoder, paired_data) -> None:
    model = ClipModel(dual_encoder)
    loss_params = {name: p.detach().clone() for name, p in model.loss_fn.named_parameters()}
    assert loss_params, "clip should hold its learnable temperature as a parameter"
    trainer = Trainer(
        model=model,
        args=args(tmp_path, optim="adamw_torch", learning_rate=5e-2, max_steps=12, per_device_train_batch_size=16,
                  save_strategy="steps", save_steps=12),
        train_dataset=paired_data,
    )
    losses = train_losses(trainer)
    assert len(losses) == 12 and losses[-1] < losses[0]
    changed = [n for n, p in model.loss_fn.named_parameters() if not torch.equal(p.detach(), loss_params[n])]
    assert changed, "the learnable temperature was not optimised"

    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "checkpoint-12" / "model.safetensors"))
    for name in changed:
        torch.testing.assert_close(saved[f"loss_fn.{name}"], dict(model.loss_fn.named_parameters())[name].detach())
