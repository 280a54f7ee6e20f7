"""Issue 13 §2: the similarity store keeps explicit object ids, round-trips (float16 too) and refuses matrices made
for other objects or settings with one sentence."""
import json

import numpy as np
import pytest
import torch

from plugin.clip import similarity_store as store
from plugin.clip.similarity_store import SimilarityStore, make_manifest
from plugin.errors import BadInputError, ConfigError, DataNotFoundError

ENCODER = {"kind": "clip", "name": "tiny-clip-test", "weights": "none", "image_size": 32, "digest": "abc"}
IDS = {"chair": ["c7", "c2", "c9"], "lamp": ["l1", "l0"]}  # deliberately not sorted


def _one_sentence(error) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and message.count(": ") >= 1, message
    return message


def _write_store(root, dtype="float32", seed=0):
    """A store of 2 categories with random embeddings (V=2, D=4) and matrices; returns what was written."""
    rng = np.random.default_rng(seed)
    manifest = make_manifest(ENCODER, views=2, categories=IDS, kinds=["i2i", "i2l2"], dtype=dtype, landmarks=3,
                             landmark_file="landmarks.json", landmark_digest="d1")
    written = {}
    for category, ids in IDS.items():
        emb = rng.normal(size=(len(ids), 2, 4)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
        written[(store.EMBEDDINGS, category)] = emb
        store.write_category(str(root), store.EMBEDDINGS, category, ids, emb, dtype,
                             store.file_fingerprint(manifest, store.EMBEDDINGS, category, ids))
        for kind in ("i2i", "i2l2"):
            matrix = rng.uniform(size=(len(ids), len(ids))).astype(np.float32)
            written[(kind, category)] = matrix
            store.write_category(str(root), kind, category, ids, torch.from_numpy(matrix), dtype,
                                 store.file_fingerprint(manifest, kind, category, ids))
    store.write_manifest(str(root), manifest)
    return manifest, written


@pytest.mark.parametrize("dtype, atol", [("float32", 0.0), ("float16", 1e-3)])
def test_round_trip(tmp_path, dtype, atol):
    manifest, written = _write_store(tmp_path, dtype)
    opened = SimilarityStore.open(str(tmp_path))
    assert opened.categories == ["chair", "lamp"] and opened.fingerprint == manifest["fingerprint"]
    assert opened.manifest == manifest
    assert opened.ids("chair") == IDS["chair"]
    with np.load(tmp_path / "i2i" / "chair.npz") as raw:
        assert raw["matrix"].dtype == np.dtype(dtype)
    for kind in ("i2i", "i2l2"):
        for index, category in enumerate(opened.categories):
            matrix = opened.matrix(kind, index)
            assert matrix.dtype == torch.float32
            np.testing.assert_allclose(matrix.numpy(), written[(kind, category)], atol=atol, rtol=0)
            assert opened.matrix(kind, index) is matrix  # cached
    emb = opened.embeddings("lamp")
    assert emb.dtype == np.float32 and emb.shape == (2, 2, 4)
    np.testing.assert_allclose(emb, written[(store.EMBEDDINGS, "lamp")], atol=atol, rtol=0)
    cat, row = opened.rows(["l0", "c9", "c7", "l1"], ["lamp", "chair", "chair", "lamp"])
    assert cat.tolist() == [1, 0, 0, 1] and row.tolist() == [1, 2, 0, 0]
    assert cat.dtype == np.int64 and row.dtype == np.int64


def test_fingerprint_covers_the_settings_and_the_objects():
    base = make_manifest(ENCODER, views=2, categories=IDS)
    assert make_manifest(ENCODER, views=2, categories=IDS)["fingerprint"] == base["fingerprint"]
    assert make_manifest(ENCODER, views=3, categories=IDS)["fingerprint"] != base["fingerprint"]
    assert make_manifest({**ENCODER, "digest": "xyz"}, views=2, categories=IDS)["fingerprint"] != base["fingerprint"]
    reordered = {"chair": ["c2", "c7", "c9"], "lamp": ["l1", "l0"]}
    assert make_manifest(ENCODER, views=2, categories=reordered)["fingerprint"] != base["fingerprint"]
    # a file's fingerprint covers only what it depends on: landmarks change i2l2 files, not i2i ones
    with_landmarks = make_manifest(ENCODER, views=2, categories=IDS, landmarks=5)
    assert (store.file_fingerprint(base, "i2i", "chair", IDS["chair"])
            == store.file_fingerprint(with_landmarks, "i2i", "chair", IDS["chair"]))
    assert (store.file_fingerprint(base, "i2l2", "chair", IDS["chair"])
            != store.file_fingerprint(with_landmarks, "i2l2", "chair", IDS["chair"]))


def test_check_refuses_a_manifest_with_other_settings(tmp_path):
    _write_store(tmp_path)
    opened = SimilarityStore.open(str(tmp_path))
    opened.check({"views": 2, "landmarks": 3, "encoder": dict(ENCODER), "kinds": ["i2i"]})
    with pytest.raises(ConfigError) as error:
        opened.check({"views": 12, "landmarks": 3})
    message = _one_sentence(error)
    assert "views 2, not 12" in message and "precompute_similarity.py" in message
    with pytest.raises(ConfigError) as error:
        opened.check({"encoder": {**ENCODER, "name": "ViT-B-32"}})
    assert "encoder" in _one_sentence(error)


def test_unknown_objects_and_categories_are_refused(tmp_path):
    _write_store(tmp_path)
    opened = SimilarityStore.open(str(tmp_path))
    with pytest.raises(BadInputError) as error:
        opened.rows(["c7", "c3"], ["chair", "chair"])
    message = _one_sentence(error)
    assert "'c3'" in message and "made for other objects" in message and "rerun" in message
    with pytest.raises(BadInputError) as error:
        opened.rows(["b1"], ["bed"])
    assert "'bed'" in _one_sentence(error)


def test_a_missing_store_names_the_key_and_the_tool(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        SimilarityStore.open(str(tmp_path / "nowhere"), key="model.similarity.dir")
    message = _one_sentence(error)
    assert "model.similarity.dir" in message and "python tools/precompute_similarity.py" in message


def test_files_of_another_run_are_refused(tmp_path):
    manifest, _ = _write_store(tmp_path)
    other = make_manifest({**ENCODER, "digest": "other"}, views=2, categories=IDS, kinds=["i2i", "i2l2"],
                          landmarks=3, landmark_file="landmarks.json", landmark_digest="d1")
    store.write_category(str(tmp_path), "i2i", "lamp", IDS["lamp"], np.eye(2), "float32",
                         store.file_fingerprint(other, "i2i", "lamp", IDS["lamp"]))
    opened = SimilarityStore.open(str(tmp_path))
    opened.matrix("i2i", 0)
    with pytest.raises(BadInputError) as error:
        opened.matrix("i2i", 1)
    assert "mixes two runs" in _one_sentence(error)
    (tmp_path / "i2l2" / "chair.npz").unlink()
    with pytest.raises(BadInputError):
        opened.matrix("i2l2", 0)


def test_unreadable_manifest_and_missing_kind(tmp_path):
    _write_store(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "kinds": ["i2i"]}))
    opened = SimilarityStore.open(str(tmp_path))
    with pytest.raises(ConfigError) as error:
        opened.matrix("i2l2", 0)
    assert "--kinds i2l2" in _one_sentence(error)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BadInputError) as error:
        SimilarityStore.open(str(tmp_path))
    _one_sentence(error)


def test_in_memory_store_without_files():
    manifest = make_manifest({"kind": "test"}, views=1, categories={"a": ["x", "y"], "b": ["z"]}, kinds=["i2i"])
    matrices = {"i2i": [torch.tensor([[1.0, 0.5], [0.5, 1.0]]), torch.ones(1, 1)]}
    memory = SimilarityStore(manifest, None, matrices, ids={"a": ["x", "y"], "b": ["z"]},
                             embeddings={"b": np.ones((1, 1, 2))})
    assert memory.root is None and memory.categories == ["a", "b"] and memory.kinds == ["i2i"]
    assert memory.matrix("i2i", 0)[0, 1].item() == 0.5
    cat, row = memory.rows(["z", "y"], ["b", "a"])
    assert cat.tolist() == [1, 0] and row.tolist() == [0, 1]
    assert memory.embeddings("b").dtype == np.float32
    # without a manifest's categories, the categories are the matrices' indices
    bare = SimilarityStore({}, None, {"i2i": [torch.eye(3), torch.eye(2)]})
    assert bare.categories == ["0", "1"] and bare.matrix("i2i", 1).shape == (2, 2)


def test_ids_come_from_any_file_of_the_category(tmp_path):
    _write_store(tmp_path)
    for category in IDS:
        (tmp_path / "embeddings" / f"{category}.npz").unlink()
    (tmp_path / "i2i" / "lamp.npz").unlink()
    opened = SimilarityStore.open(str(tmp_path))
    cat, row = opened.rows(["l0", "c2"], ["lamp", "chair"])  # lamp from i2l2, chair from i2i
    assert cat.tolist() == [1, 0] and row.tolist() == [1, 1]
    (tmp_path / "i2l2" / "lamp.npz").unlink()
    with pytest.raises(BadInputError):
        SimilarityStore.open(str(tmp_path)).ids("lamp")
