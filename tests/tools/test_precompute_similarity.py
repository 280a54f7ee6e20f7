"""Issue 13 §2: tools/precompute_similarity.py writes a similarity store from a RenderedViews folder (embeddings,
I2I and (I2L)^2 matrices per category, manifest, throughput), resumes per category and answers bad input with one
sentence (exit status 2)."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plugin.clip import TINY_CLIP, encode_prompts, i2i_similarity, i2l2_similarity, landmark_descriptors
from plugin.clip.similarity_store import SimilarityStore
from plugin.errors import BadInputError
from plugin.models.backbones.image_embedders import build_image_embedder

from ..conftest import SHARED_DATA, load_tool, one_sentence

CLASSES = ["airplane", "bathtub", "chair"]
OBJECTS = [("obj_c1", 2), ("obj_a0", 0), ("obj_a2", 0), ("obj_c0", 2), ("obj_a1", 0)]  # no bathtub in train
VIEWS, SIZE = 3, 32
LANDMARKS = {"airplane": ["a plane with swept wings.", "a propeller aircraft.", "a jet with two engines.", "x"],
             "chair": ["a chair with four legs.", "an office chair on wheels.", "a stool with a backrest."]}
ENCODER = ["--encoder", "NAME=clip", f"name={TINY_CLIP}", "pretrained=none"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("precompute_similarity")


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> Path:
    """A tiny RenderedViews folder: 3 airplanes and 2 chairs, 3 views of 32 px each, points.npy, no cameras.npz;
    and a PointCLIP V2-style landmark file beside it."""
    root = tmp_path_factory.mktemp("views") / "rendered"
    root.mkdir()
    rng = np.random.default_rng(0)
    (root / "meta.json").write_text(json.dumps({"classes": CLASSES, "image_size": SIZE}))
    (root / "train.txt").write_text("".join(f"{o} {y}\n" for o, y in OBJECTS))
    (root / "test.txt").write_text("obj_t0 1\n")
    for object_id, _ in OBJECTS + [("obj_t0", 1)]:
        (root / object_id).mkdir()
        np.save(root / object_id / "points.npy", rng.normal(size=(64, 3)).astype(np.float32))
        for v in range(VIEWS):
            image = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / object_id / f"view_{v:02d}.png")
    (root.parent / "landmarks.json").write_text(json.dumps(LANDMARKS))
    return root


def _run(tool, views: Path, out: Path, *extra: str) -> int:
    torch.manual_seed(0)  # the tiny CLIP's random weights: the same seed is the same encoder (and digest)
    return tool.main(["--data", str(views), "--out", str(out), *ENCODER, "--workers", "0", *extra])


def _mtimes(out: Path):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_writes_embeddings_matrices_manifest_and_throughput(tool, views, tmp_path, capsys):
    out = tmp_path / "store"
    assert _run(tool, views, out, "--landmarks", str(views.parent / "landmarks.json"), "--num-landmarks", "3",
                "--dtype", "float16", "--block", "2") == 0
    assert "embedding" in capsys.readouterr().out
    for kind in ("embeddings", "i2i", "i2l2"):
        assert sorted(p.name for p in (out / kind).iterdir()) == ["airplane.npz", "chair.npz"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["views"] == VIEWS and manifest["landmarks"] == 3 and manifest["dtype"] == "float16"
    assert manifest["kinds"] == ["i2i", "i2l2"] and manifest["encoder"]["name"] == TINY_CLIP
    assert [(c["name"], c["count"]) for c in manifest["categories"]] == [("airplane", 3), ("chair", 2)]

    store = SimilarityStore.open(str(out))
    assert store.ids("airplane") == ["obj_a0", "obj_a2", "obj_a1"]  # split-file order, not sorted
    cat, row = store.rows(["obj_c0", "obj_a1"], ["chair", "airplane"])
    assert cat.tolist() == [1, 0] and row.tolist() == [1, 2]
    torch.manual_seed(0)
    embedder = build_image_embedder({"NAME": "clip", "name": TINY_CLIP, "pretrained": "none"})
    for index, category in enumerate(store.categories):
        ids = store.ids(category)
        images = torch.stack([torch.stack([torch.from_numpy(np.asarray(Image.open(views / o / f"view_{v:02d}.png"),
                                                                       dtype=np.float32) / 255).permute(2, 0, 1)
                                           for v in range(VIEWS)]) for o in ids])
        expected = embedder(images.flatten(0, 1)).view(len(ids), VIEWS, -1)
        emb = torch.from_numpy(store.embeddings(category))
        torch.testing.assert_close(emb, expected, atol=2e-3, rtol=0)  # float16 on disk
        torch.testing.assert_close(store.matrix("i2i", index), i2i_similarity(emb, emb), atol=1e-3, rtol=0)
        texts = encode_prompts(embedder.clip, LANDMARKS[category][:3])
        desc = landmark_descriptors(emb, texts)
        torch.testing.assert_close(store.matrix("i2l2", index), i2l2_similarity(desc, desc), atol=1e-3, rtol=0)
        torch.testing.assert_close(store.matrix("i2i", index).diagonal(), torch.ones(len(ids)), atol=1e-3, rtol=0)
    throughput = json.loads((out / "throughput.json").read_text())
    assert throughput["objects_embedded"] == 5 and throughput["objects_compared"] == 5
    assert throughput["embedding_objects_per_s"] > 0 and throughput["similarity_objects_per_s"] > 0


def test_resumes_per_category(tool, views, tmp_path, capsys):
    out = tmp_path / "store"
    assert _run(tool, views, out, "--views", "2") == 0
    assert json.loads((out / "manifest.json").read_text())["kinds"] == ["i2i"]
    before = _mtimes(out)
    assert _run(tool, views, out, "--views", "2") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _mtimes(out) == before  # the second run writes nothing
    (out / "i2i" / "chair.npz").unlink()
    assert _run(tool, views, out, "--views", "2") == 0
    after = _mtimes(out)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"i2i/chair.npz", "throughput.json"}  # embeddings reused, other category untouched
    assert json.loads((out / "throughput.json").read_text())["objects_embedded"] == 0
    # another encoder (another random initialisation) recomputes everything
    torch.manual_seed(1)
    assert tool.main(["--data", str(views), "--out", str(out), *ENCODER, "--workers", "0", "--views", "2"]) == 0
    assert json.loads((out / "throughput.json").read_text())["objects_embedded"] == 5


def _mixed_views(views: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "mixed"
    shutil.copytree(views, copy)
    os.remove(copy / "obj_c0" / f"view_{VIEWS - 1:02d}.png")
    return copy


@pytest.mark.parametrize("case, needle", [
    ("missing_data", "--data"),
    ("mixed_views", "--views 2"),
    ("i2l2_without_landmarks", "--landmarks"),
    ("uncovered_category", "'chair'"),
    ("bad_encoder_words", "key=value"),
    ("timm_has_no_text_tower", "--text-encoder"),
    ("text_dimension_mismatch", "320-d"),
    ("bad_block", "--block"),
])
def test_bad_input_is_one_sentence_with_exit_status_2(tool, views, tmp_path, capsys, case, needle):
    data, extra = views, []
    if case == "missing_data":
        data = tmp_path / "nowhere"
    elif case == "mixed_views":
        data = _mixed_views(views, tmp_path)
    elif case == "i2l2_without_landmarks":
        extra = ["--kinds", "i2l2"]
    elif case == "uncovered_category":
        (tmp_path / "planes.json").write_text(json.dumps({"airplane": LANDMARKS["airplane"]}))
        extra = ["--landmarks", str(tmp_path / "planes.json"), "--num-landmarks", "2"]
    elif case == "bad_encoder_words":
        extra = ["--encoder", "NAME=clip", "tiny"]
    elif case == "timm_has_no_text_tower":
        extra = ["--encoder", "NAME=timm", "name=tf_efficientnet_lite0", "pretrained=none", "image_size=32",
                 "--landmarks", str(views.parent / "landmarks.json"), "--num-landmarks", "2"]
    elif case == "text_dimension_mismatch":
        extra = ["--encoder", "NAME=timm", "name=tf_efficientnet_lite0", "pretrained=none", "image_size=32",
                 "--text-encoder", "NAME=clip", f"name={TINY_CLIP}", "pretrained=none",
                 "--landmarks", str(views.parent / "landmarks.json"), "--num-landmarks", "2"]
    elif case == "bad_block":
        extra = ["--block", "0"]
    assert _run(tool, data, tmp_path / "store", *extra) == 2
    assert needle in one_sentence(capsys)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_reads_the_no_captions_landmarks(tool):
    path = SHARED_DATA / "text" / "nocaptions_shapenet_landmarks.json"
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared/data is only present beside the project)")
    table = json.loads(path.read_text())
    texts = tool.read_landmarks(str(path), ["airplane", "02691156", "trash_bin", "Remote Control"], 128)
    assert texts["airplane"] == texts["02691156"] == table["02691156"]["descriptions"]
    assert texts["trash_bin"] == table["02747177"]["descriptions"]  # ShapeNet's name of the synset "ashcan"
    assert len(texts["Remote Control"]) == 128
    assert len(tool.read_landmarks(str(path), ["chair"], 16)["chair"]) == 16
    with pytest.raises(BadInputError, match="--num-landmarks 128"):
        tool.read_landmarks(str(path), ["chair"], 129)
