"""Does ``token_box`` help a tiny grounding decoder? CE alone vs CE + token_box, digits and location tokens.

A generated image (``--size`` pixels, noise) holds one bright rectangle; a tiny decoder
(linear patch embedding as a prefix, a few causal transformer layers, built here) learns
to write its box as text: Qwen2-VL-style digits ``<box_start>x1,y1,x2,y2<box_end>`` on a
0-100 grid, or four location tokens ``<loc_k>`` (``--size * 2 + 1`` bins, edges: every
pixel corner is a bin). Each seed trains twice from the same initial weights, on the same
batches, for the same steps and learning rate: with ``token_ce`` alone, and with
``token_ce + weight * token_box`` (L1 + GIoU on the expected box). Greedy decoding on a
held-out split then gives the mean IoU (a malformed box scores 0) and the share of
well-formed boxes; the table reports mean and standard deviation over seeds.

    python benchmarks/token_box_experiment.py                     # everything in one process
    # the docs figure: one process per vocabulary (2 CPU cores), then one table and plot
    python benchmarks/token_box_experiment.py --styles digits --out /tmp/d.json --plot /tmp/d.png &
    python benchmarks/token_box_experiment.py --styles loc_tokens --out /tmp/l.json --plot /tmp/l.png; wait
    python benchmarks/token_box_experiment.py --combine /tmp/d.json /tmp/l.json
    python benchmarks/token_box_experiment.py --steps 100 --seeds 2 --quick-eval   # a smoke run

Writes ``--out`` (default ``benchmarks/results/token_box_experiment.json``) and the plot
``--plot`` (default ``docs/img/token_box_experiment.png``), and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import losskit
from losskit_plugins.boxes.inputs import to_rows
from losskit_plugins.boxes.iou import box_iou_loss

ROOT = Path(__file__).resolve().parents[1]
PATCH = 4
DIGITS = list(range(10))
START, END, COMMA, EOS = 10, 11, 12, 13  # the digit vocabulary: 0-9, then these


class Vocabulary:
    """How boxes become tokens and back, for one style."""

    def __init__(self, style: str, size: int) -> None:
        self.style, self.size = style, size
        self.bins = 2 * size + 1  # loc: bin k stands for k / (2 size): every pixel corner exactly
        self.vocab = EOS + 1 if style == "digits" else self.bins + 1
        self.eos = EOS if style == "digits" else self.bins
        self.max_new = 20 if style == "digits" else 5

    def config(self) -> dict:
        if self.style == "digits":
            return {"digit_token_ids": DIGITS, "box_start_id": START, "box_end_id": END, "separator_ids": [COMMA],
                    "coord_range": (0.0, 100.0)}
        return {"style": "loc_tokens", "loc_first_id": 0, "num_bins": self.bins, "bin_position": "edge",
                "coord_range": (0.0, 1.0)}

    def encode(self, box: list[int]) -> list[int]:
        """Pixel corners ``[x1, y1, x2, y2]`` -> tokens (ending with EOS)."""
        if self.style == "loc_tokens":
            return [2 * c for c in box] + [self.eos]
        out = [START]
        for i, c in enumerate(box):
            out += [int(ch) for ch in str(round(100 * c / self.size))] + ([COMMA] if i < 3 else [])
        return out + [END, EOS]

    def decode(self, tokens: list[int]) -> list[float] | None:
        """Generated tokens -> a normalised xyxy box, or None when malformed."""
        if self.style == "loc_tokens":
            if len(tokens) < 5 or tokens[4] != self.eos or any(t >= self.bins for t in tokens[:4]):
                return None
            return [t / (self.bins - 1) for t in tokens[:4]]
        if END not in tokens or tokens[0] != START:
            return None
        body = tokens[1 : tokens.index(END)]
        numbers, current = [], ""
        for t in body + [COMMA]:
            if t in DIGITS:
                current += str(t)
            elif t == COMMA and current:
                numbers.append(int(current) / 100)
                current = ""
            else:
                return None
        return numbers if len(numbers) == 4 else None


def make_data(n: int, size: int, gen: torch.Generator) -> tuple[Tensor, list[list[int]]]:
    """``n`` noisy ``[size, size]`` images, each with one bright rectangle, and its pixel box."""
    images = 0.3 * torch.randn(n, size, size, generator=gen)
    boxes = []
    for i in range(n):
        w, h = (int(v) for v in torch.randint(3, size // 2 + 2, (2,), generator=gen))
        x1, y1 = int(torch.randint(0, size - w + 1, (1,), generator=gen)), int(torch.randint(0, size - h + 1, (1,), generator=gen))
        images[i, y1 : y1 + h, x1 : x1 + w] += 1.0
        boxes.append([x1, y1, x1 + w, y1 + h])
    return images, boxes


class TinyDecoder(nn.Module):
    """Patch embeddings as a prefix, token embeddings after, a few causal transformer layers, an LM head."""

    def __init__(self, size: int, vocab: int, dim: int, layers: int, max_len: int) -> None:
        super().__init__()
        self.patches = (size // PATCH) ** 2
        self.patch_embed = nn.Linear(PATCH * PATCH, dim)
        self.token_embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(self.patches + max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        """``images [B, S, S]``, ``tokens [B, L]`` -> logits ``[B, P + L, V]``."""
        b, s, _ = images.shape
        patches = images.reshape(b, s // PATCH, PATCH, s // PATCH, PATCH).transpose(2, 3).reshape(b, -1, PATCH * PATCH)
        x = torch.cat((self.patch_embed(patches), self.token_embed(tokens)), 1)  # [B, P + L, D]
        x = x + self.position[: x.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


def batch_tokens(vocab: Vocabulary, boxes: list[list[int]], patches: int) -> tuple[Tensor, Tensor]:
    """Teacher-forcing inputs ``[B, L]`` and labels ``[B, P + L]`` (-100 on the image and the padding)."""
    seqs = [vocab.encode(b) for b in boxes]
    length = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), length), vocab.eos)
    labels = torch.full((len(seqs), patches + length), -100)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
        labels[i, patches : patches + len(s)] = torch.tensor(s)
    return tokens, labels


@torch.no_grad()
def evaluate(model: TinyDecoder, vocab: Vocabulary, images: Tensor, boxes: list[list[int]]) -> dict[str, float]:
    """Greedy decoding: mean IoU (malformed boxes score 0) and the share of well-formed boxes."""
    model.eval()
    tokens = torch.zeros(len(boxes), 0, dtype=torch.long)
    for _ in range(vocab.max_new):
        logits = model(images, tokens)
        tokens = torch.cat((tokens, logits[:, -1].argmax(-1, keepdim=True)), 1)
    model.train()
    decoded = [vocab.decode(row) for row in tokens.tolist()]
    ok = [d is not None for d in decoded]
    pred = torch.tensor([d if d is not None else [0.0, 0.0, 0.0, 0.0] for d in decoded], dtype=torch.float64)
    target = torch.tensor(boxes, dtype=torch.float64) / vocab.size
    pred = torch.cat((pred[:, :2].minimum(pred[:, 2:]), pred[:, :2].maximum(pred[:, 2:])), 1)  # order the corners
    iou = box_iou_loss(to_rows(pred, "xyxy"), to_rows(target, "xyxy"), "iou", 1e-9)[1]
    iou = torch.where(torch.tensor(ok), iou, 0.0)
    return {"mean_iou": float(iou.mean()), "well_formed": sum(ok) / len(ok)}


def train_once(args: argparse.Namespace, vocab: Vocabulary, seed: int, with_box: bool, data: dict) -> dict:
    """One run; the initial weights and the batch order depend on ``seed`` only."""
    torch.manual_seed(seed)
    model = TinyDecoder(args.size, vocab.vocab, args.dim, args.layers, 24)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    ce = losskit.build("token_ce")
    box = losskit.build({"name": "token_box", **vocab.config(), "iou_loss": "giou"})
    order = torch.Generator().manual_seed(seed)
    images, boxes = data["train"]
    start = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, len(boxes), (args.batch,), generator=order)
        tokens, labels = batch_tokens(vocab, [boxes[i] for i in idx.tolist()], model.patches)
        logits = model(images[idx], tokens)
        loss = ce(logits, labels)
        if with_box:
            loss = loss + args.box_weight * box(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    result = evaluate(model, vocab, *data["test"]) | {"seconds": time.perf_counter() - start}
    arm = "CE + token_box" if with_box else "CE"
    print(f"{vocab.style} | {arm} | seed {seed}: {result}", flush=True)
    return result


def run_all(args: argparse.Namespace) -> dict[str, dict[str, list[dict]]]:
    """Every style, arm and seed, on one generated dataset."""
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1234)  # one dataset for every run
    data = {"train": make_data(args.train, args.size, gen), "test": make_data(args.test, args.size, gen)}
    return {
        style: {
            arm: [train_once(args, Vocabulary(style, args.size), seed, arm != "CE", data) for seed in range(args.seeds)]
            for arm in ("CE", "CE + token_box")
        }
        for style in args.styles
    }


def summarise(runs: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in runs]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, title in zip(axes, ("mean_iou", "well_formed"), ("held-out mean IoU", "well-formed boxes")):
        for i, (style, arms) in enumerate(results.items()):
            for j, (arm, runs) in enumerate(arms.items()):
                x = i + (j - 0.5) * 0.35
                mean, std = summarise(runs, key)
                ax.bar(x, mean, 0.33, yerr=std, color=("#8da0cb", "#fc8d62")[j], label=arm if i == 0 else None, capsize=3)
                ax.scatter([x] * len(runs), [r[key] for r in runs], color="k", s=8, zorder=3)
        ax.set_xticks(range(len(results)), list(results))
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (a multiple of 4)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--box-weight", type=float, default=1.0, help="weight of token_box beside token_ce")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--styles", nargs="+", default=["digits", "loc_tokens"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (run one process per style to use 2 cores)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="only merge these result files (e.g. one per style) into one table, record and plot")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "token_box_experiment.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "token_box_experiment.png")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.combine:
        parts = [json.loads(path.read_text()) for path in args.combine]
        results = {style: arms for part in parts for style, arms in part["results"].items()}
        began -= max(part["total_seconds"] for part in parts)  # the parts ran side by side
    else:
        results = run_all(args)
    print("| vocabulary | loss | mean IoU | well-formed | seconds / run |\n|---|---|---|---|---|")
    for style, arms in results.items():
        for arm, runs in arms.items():
            (iou, iou_sd), (ok, ok_sd) = summarise(runs, "mean_iou"), summarise(runs, "well_formed")
            print(f"| {style} | {arm} | {iou:.3f} ± {iou_sd:.3f} | {ok:.3f} ± {ok_sd:.3f} | "
                  f"{statistics.mean(r['seconds'] for r in runs):.1f} |")
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
              "total_seconds": time.perf_counter() - began}
    if args.combine:
        record["parts_args"] = [part["args"] for part in parts]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    plot(results, args.plot)
    print(f"total {record['total_seconds']:.0f} s; wrote {args.out} and {args.plot}")
    return record


if __name__ == "__main__":
    main()
