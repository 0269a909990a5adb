"""Byte-level UTF-8 tokenizer: any language, no vocabulary file to download.

Each UTF-8 byte of a caption is one token (id = byte + :data:`ByteTokenizer.OFFSET`);
ids 0, 1, 2 are ``<pad>``, ``<bos>`` and ``<eos>``. A Chinese character is three
tokens, an ASCII letter one. This is the scheme of ByT5 (Xue et al., 2022) minus its
sentinel tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["ByteTokenizer"]


class ByteTokenizer:
    """Encode captions to byte ids, padded or truncated to ``max_length``.

    Args:
        max_length: tokens per caption including ``<bos>``/``<eos>``; longer captions
            are cut (keeping ``<eos>`` last), shorter ones padded with ``<pad>`` (0).
    """

    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3
    vocab_size = 256 + OFFSET

    def __init__(self, max_length: int = 64) -> None:
        if max_length < 3:
            raise ValueError(f"max_length: expected >= 3 (room for <bos>, one byte, <eos>), got {max_length}")
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        """Ids of one caption, ``[<bos>, bytes..., <eos>]``, at most ``max_length`` long."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str caption, got {type(text).__name__}")
        body = [b + self.OFFSET for b in text.encode("utf-8")[: self.max_length - 2]]
        return [self.BOS, *body, self.EOS]

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Token ids ``[N, max_length]`` (int64), right-padded with 0."""
        out = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.encode(text)
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The caption back from its ids (special tokens dropped; a cut multi-byte character is replaced)."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        data = bytes(i - self.OFFSET for i in values if i >= self.OFFSET)
        return data.decode("utf-8", errors="replace")
