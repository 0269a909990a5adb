"""Data: generated dataset, COCO and JSONL/CSV fixtures with real image files, on_bad_image."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from losskit.errors import ConfigError
from losskit.train.config import DataConfig
from losskit.train.data.base import BadImageError
from losskit.train.data.files import load_coco, load_manifest
from losskit.train.data.loader import PairDataset, ResumableSampler, build_splits, collate, normalize_images
from losskit.train.data.synthetic import generate_split


def _png(path, colour, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size + 4, 3), colour, dtype=np.uint8)).save(path)


def test_generated_is_deterministic_and_grouped_by_description():
    a = generate_split(40, seed=3, split=0, image_size=16)
    b = generate_split(40, seed=3, split=0, image_size=16)
    assert torch.equal(a.images.pixels, b.images.pixels) and a.captions == b.captions
    assert a.images.pixels.shape == (40, 3, 16, 16) and a.images.pixels.dtype == torch.uint8
    other = generate_split(40, seed=3, split=1, image_size=16)
    assert not torch.equal(a.images.pixels, other.images.pixels)
    # images sharing a group read the same: their caption sets come from one description
    for i in range(40):
        for j in range(40):
            if a.image_group[i] == a.image_group[j] and i != j:
                assert not torch.equal(a.images.pixels[i], a.images.pixels[j])  # jittered renders differ
    assert len(a.captions) == 3 * 40 and (a.caption_image.bincount() == 3).all()


def test_coco_fixture(tmp_path):
    _png(tmp_path / "imgs/a.png", (255, 0, 0))
    _png(tmp_path / "imgs/b.jpg", (0, 0, 255))
    ann = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [{"image_id": i, "caption": f"c{i}{k}"} for i in (1, 2) for k in range(5)],
    }
    (tmp_path / "captions_val.json").write_text(json.dumps(ann))
    split = load_coco(tmp_path / "captions_val.json", image_root=tmp_path / "imgs", image_size=12, augment=False, on_bad_image="raise")
    assert len(split.images) == 2 and len(split.captions) == 10
    assert split.caption_group.tolist() == [0] * 5 + [1] * 5  # five captions per image -> one group
    image = split.images.load(0, seed=0)
    assert image.shape == (3, 12, 12) and image.dtype == torch.uint8
    assert image[0].float().mean() > 200 and image[2].float().mean() < 30  # red, really decoded


def test_jsonl_and_csv_manifests_with_chinese_captions(tmp_path):
    _png(tmp_path / "x.png", (0, 255, 0))
    _png(tmp_path / "y.png", (9, 9, 9))
    rows = [("x.png", "一只绿色的猫"), ("x.png", "a green cat"), ("y.png", "dark")]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"image": i, "caption": c}) for i, c in rows) + "\n")
    (tmp_path / "m.csv").write_text("image,caption\n" + "".join(f"{i},{c}\n" for i, c in rows), encoding="utf-8")
    for name in ("m.jsonl", "m.csv"):
        split = load_manifest(tmp_path / name, image_root=None, image_size=8, augment=True, on_bad_image="raise")
        assert split.captions[0] == "一只绿色的猫" and split.caption_group.tolist() == [0, 0, 1]
        assert torch.equal(split.images.load(0, seed=5), split.images.load(0, seed=5))  # seeded augmentation
    (tmp_path / "bad.jsonl").write_text('{"image": "x.png"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        load_manifest(tmp_path / "bad.jsonl", image_root=None, image_size=8, augment=False, on_bad_image="raise")


def test_missing_file_raise_names_it_and_skip_counts(tmp_path):
    _png(tmp_path / "ok.png", (1, 2, 3))
    rows = [{"image": "ok.png", "caption": "fine"}, {"image": "gone.png", "caption": "lost"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(BadImageError, match=r"gone\.png"):
        load_manifest(tmp_path / "m.jsonl", image_root=None, image_size=8, augment=False, on_bad_image="raise")
    split = load_manifest(tmp_path / "m.jsonl", image_root=None, image_size=8, augment=False, on_bad_image="skip")
    assert split.captions == ["fine"] and split.skipped == [str(tmp_path / "gone.png")]


def test_undecodable_file_is_reported_not_raised_in_the_worker(tmp_path):
    _png(tmp_path / "ok.png", (1, 2, 3))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    rows = [{"image": "ok.png", "caption": "fine"}, {"image": "broken.png", "caption": "bad"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    split = load_manifest(tmp_path / "m.jsonl", image_root=None, image_size=8, augment=False, on_bad_image="raise")
    from losskit.train.tokenizer import ByteTokenizer

    dataset = PairDataset(split, ByteTokenizer(16)(split.captions))
    batch = collate([dataset[(0, 0)], dataset[(1, 0)]])
    assert batch["images"].shape == (1, 3, 8, 8) and "broken.png" in batch["bad"][0]
    assert batch["bad_files"] == [str(tmp_path / "broken.png")]


def test_normalisation_matches_torchvision_with_imagenet_statistics():
    from torchvision.transforms import v2

    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = v2.Compose(
        [v2.ToDtype(torch.float64, scale=True), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]
    )(images)
    assert torch.allclose(normalize_images(images).double(), reference, atol=1e-5)


def test_sampler_resumes_mid_epoch_and_shards():
    dataset = list(range(20))
    full = list(ResumableSampler(dataset, num_replicas=1, rank=0, seed=1))
    s = ResumableSampler(dataset, num_replicas=1, rank=0, seed=1)
    s.set_start(7)
    assert list(s) == full[7:]
    shards = [list(ResumableSampler(dataset, num_replicas=2, rank=r, seed=1)) for r in (0, 1)]
    assert sorted(i for sh in shards for i, _ in sh) == list(range(20))


def test_shuffled_pairs_control_repairs_captions():
    cfg = DataConfig(train_images=50, val_images=10, image_size=16, shuffle_pairs=True)
    splits = build_splits(cfg, seed=0)
    plain = build_splits(DataConfig(train_images=50, val_images=10, image_size=16), seed=0)
    assert splits.train.captions == plain.train.captions
    assert (splits.train.caption_image != plain.train.caption_image).float().mean() > 0.8
    assert torch.equal(splits.val.caption_image, plain.val.caption_image)  # validation stays true


def _manifest(root, rows, name="m.jsonl"):
    (root / name).write_text("\n".join(json.dumps(r) for r in rows))
    return root / name


def _load(path, **kw):
    return load_manifest(path, image_root=kw.get("root"), image_size=8, augment=False, on_bad_image="raise")


def test_paths_leaving_the_image_root_are_refused(tmp_path):
    _png(tmp_path / "outside.png", (1, 2, 3))
    (tmp_path / "imgs").mkdir()
    for name in ("../outside.png", "../../../etc/hostname", str(tmp_path / "outside.png"), "a/../../outside.png"):
        path = _manifest(tmp_path, [{"image": name, "caption": "x"}])
        with pytest.raises(ConfigError, match=r"m\.jsonl:1: image path .* (leaves image_root|is absolute)"):
            _load(path, root=tmp_path / "imgs")
    ann = {"images": [{"id": 1, "file_name": "../../../etc/hostname"}], "annotations": [{"image_id": 1, "caption": "c"}]}
    (tmp_path / "c.json").write_text(json.dumps(ann))
    with pytest.raises(ConfigError, match=r"c\.json: annotations\[0\]: image path '../../../etc/hostname' leaves image_root"):
        load_coco(tmp_path / "c.json", image_root=tmp_path / "imgs", image_size=8, augment=False, on_bad_image="skip")
    _png(tmp_path / "imgs/sub/in.png", (1, 2, 3))
    inside = _manifest(tmp_path, [{"image": "sub/../sub/in.png", "caption": "x"}])
    assert len(_load(inside, root=tmp_path / "imgs").images) == 1  # ".." that stays inside is fine


@pytest.mark.parametrize(
    "row, message",
    [({"image": "x.png", "caption": None}, "caption: expected a string, got null"),
     ({"image": None, "caption": "c"}, "image: expected a string, got null"),
     ({"image": "x.png", "caption": 5}, "caption: expected a string, got int 5")],
)  # fmt: skip
def test_null_or_non_string_fields_are_refused_with_file_and_field(tmp_path, row, message):
    _png(tmp_path / "x.png", (1, 2, 3))
    path = _manifest(tmp_path, [{"image": "x.png", "caption": "fine"}, row])
    with pytest.raises(ConfigError, match=rf"m\.jsonl:2: {message}"):
        _load(path)


def test_coco_nulls_are_refused_with_the_entry(tmp_path):
    ann = {"images": [{"id": 1, "file_name": None}], "annotations": [{"image_id": 1, "caption": "c"}]}
    (tmp_path / "c.json").write_text(json.dumps(ann))
    with pytest.raises(ConfigError, match=r"c\.json: images\[0\]: file_name: expected a string, got null"):
        load_coco(tmp_path / "c.json", image_root=None, image_size=8, augment=False, on_bad_image="raise")
    ann = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "caption": None}]}
    (tmp_path / "c.json").write_text(json.dumps(ann))
    with pytest.raises(ConfigError, match=r"c\.json: annotations\[0\]: caption: expected a string, got null"):
        load_coco(tmp_path / "c.json", image_root=None, image_size=8, augment=False, on_bad_image="raise")


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl", "captions.json"])
def test_latin1_files_name_the_file_and_line(tmp_path, name):
    text = {"m.csv": "image,caption\nx.png,caf\u00e9\n", "m.jsonl": '{"image": "x.png", "caption": "caf\u00e9"}\n'}
    coco = '{"images": [{"id": 1, "file_name": "x.png"}],\n "annotations": [{"image_id": 1, "caption": "caf\u00e9"}]}'
    (tmp_path / name).write_bytes(text.get(name, coco).encode("latin-1"))
    load = load_coco if name.endswith(".json") else load_manifest
    line = 1 if name == "m.jsonl" else 2
    with pytest.raises(ConfigError, match=rf"{name}:{line}: not UTF-8 text \(byte 0xe9 at offset \d+\); save the file as UTF-8"):
        load(tmp_path / name, image_root=None, image_size=8, augment=False, on_bad_image="raise")
