"""Group-aware recall@K against a brute-force reference written with Python loops."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit.train.evaluation import chance_recall, recall_at_k


def brute_recall(sim, query_groups, key_groups, k):
    hits = 0
    for q in range(len(query_groups)):
        order = sorted(range(len(key_groups)), key=lambda j: (-sim[q][j], j))
        hits += any(key_groups[j] == query_groups[q] for j in order[:k])
    return hits / len(query_groups)


@given(
    n_images=st.integers(1, 7),
    captions_per=st.integers(1, 3),
    n_groups=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_matches_brute_force(n_images, captions_per, n_groups, seed):
    g = torch.Generator().manual_seed(seed)
    image_group = torch.randint(n_groups, (n_images,), generator=g)
    caption_image = torch.arange(n_images).repeat_interleave(captions_per)
    text_group = image_group[caption_image]
    # distinct similarities (no ties) so the ranking is unique
    sim = torch.randperm(n_images * len(text_group), generator=g).view(n_images, -1).double()
    # features whose dot products are exactly sim: image i = e_i, text j = column j of sim
    image_features = torch.eye(n_images, dtype=torch.float64)
    text_features = sim.T.contiguous()
    out = recall_at_k(image_features, text_features, image_group, text_group, ks=(1, 2, 5))
    s = sim.tolist()
    st_ = sim.T.tolist()
    for k in (1, 2, 5):
        assert abs(out[f"i2t_r{k}"] - brute_recall(s, image_group.tolist(), text_group.tolist(), k)) < 1e-6
        assert abs(out[f"t2i_r{k}"] - brute_recall(st_, text_group.tolist(), image_group.tolist(), k)) < 1e-6


def test_any_caption_of_the_group_counts():
    # two images in one group: image 0's best caption belongs to image 1 -> still a hit
    image_features = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    text_features = torch.tensor([[0.9, 0.1], [0.0, 1.0]])
    groups = torch.tensor([7, 7])
    out = recall_at_k(image_features, text_features, groups, torch.tensor([7, 3]), ks=(1,))
    assert out["i2t_r1"] == 1.0
    assert out["t2i_r1"] == 0.5  # caption of group 3 has no image


def test_chance_level():
    image_group = torch.tensor([0, 1, 2, 3])
    text_group = torch.tensor([0, 0, 1, 2, 3, 3])
    c = chance_recall(image_group, text_group)
    assert abs(c["t2i_r1"] - 0.25) < 1e-6
    assert abs(c["i2t_r1"] - (2 + 1 + 1 + 2) / 6 / 4) < 1e-6
