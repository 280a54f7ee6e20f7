"""Precompute the captionless 3D-3D similarities of No Captions, No Problem (Sbrolli & Matteucci, Sec. 3.2).

Every view of every object of a ``RenderedViews`` folder (:mod:`plugin.datasets.rendered_views`:
``meta.json`` classes, ``<split>.txt`` lines ``<object_id> <label>``, ``<object_id>/view_XX.png``;
``cameras.npz`` is not needed) is embedded once with a frozen image encoder
(:func:`plugin.models.backbones.image_embedders.build_image_embedder`). Then, within each category:

- ``i2i`` (Eq. 2): f(mean over views of e_a,r . e_b,r), f(x) = (x + 1) / 2;
- ``i2l2`` (Eqs. 3-4): g(mean over views of ||d_a,r - d_b,r||), g(x) = 1 / (1 + x), d_r the dot products
  of a view's embedding with the embeddings of L landmark texts of the category.

Landmark texts come from ``--landmarks``: the No Captions JSON ``{synset_id: {"name", "descriptions"}}``
(a category matches by synset id or name; when a ``shapenet_synset_dict.json`` lies beside it, by that
file's names too), or a PointCLIP V2 prompt file ``{class name: [sentences]}`` (or ``{class: {part:
[sentences]}}``, parts concatenated). The first ``--num-landmarks`` texts of a category are embedded with
the text tower of the image encoder when it is a CLIP, else with ``--text-encoder`` (a CLIP of the same
embedding dimension).

Output: a similarity store (:mod:`plugin.clip.similarity_store`) that training reads through
``model.similarity.dir``: ``embeddings/``, ``i2i/``, ``i2l2/`` with one ``<category>.npz`` each, and
``manifest.json`` written last. A rerun resumes: category files made with the same settings and objects
(their fingerprint) are kept. ``throughput.json`` records the objects/s of the embedding and of the
similarity step. Bad input is one sentence with exit status 2.

Example::

    python tools/precompute_similarity.py --data data/views/modelnet40_3class --split train \\
        --out data/similarity/modelnet40_3class_lite0 \\
        --encoder NAME=timm name=tf_efficientnet_lite0 pretrained=efficientnet_lite0_package
    python tools/precompute_similarity.py --data data/views/shapenet --out data/similarity/shapenet_vitb32 \\
        --encoder NAME=clip name=ViT-B-32 pretrained=weights/open_clip_vitb32.bin \\
        --landmarks ../shared/data/text/nocaptions_shapenet_landmarks.json --dtype float16
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VIEW_FILE = re.compile(r"view_(\d+)\.png$")
SYNSET_NAMES = "shapenet_synset_dict.json"  # synset id -> name, looked for beside a No Captions landmark file


def parse_block(items: Sequence[str], option: str) -> Dict[str, Any]:
    """A config block from ``key=value`` words (values parsed as YAML scalars: ``224`` is an int).

    Args:
        items: the words after the option.
        option: the option's name, for the message.
    """
    import yaml

    from plugin.errors import ConfigError

    block = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} takes key=value words (e.g. NAME=timm name=tf_efficientnet_lite0 "
                              f"pretrained=efficientnet_lite0_package), not '{item}'.")
        parsed = yaml.safe_load(value) if value else None
        block[key] = parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    return block


def read_objects(data: Path, split: str,
                 views: Optional[int]) -> Tuple[Dict[str, List[str]], Dict[str, List[Path]], int]:
    """The objects of a split grouped by category, and their view files.

    Args:
        data: the RenderedViews folder.
        split: the split list to read (``<split>.txt``).
        views: keep the first ``views`` views of each object; None: all, the same number for every object.

    Returns:
        ``(category name -> object ids in split-file order (categories in meta.json order), object id -> view
        paths, V)``.

    Raises:
        DataNotFoundError: no folder, meta.json, split list or views.
        BadInputError: unreadable lists, labels out of range, or objects with different view counts.
    """
    from plugin.errors import BadInputError, DataNotFoundError

    prepare = "a folder written by tools/render_views.py (see `python tools/render_views.py --help`)"
    meta_path, split_path = data / "meta.json", data / f"{split}.txt"
    if not meta_path.is_file() or not split_path.is_file():
        missing = meta_path if not meta_path.is_file() else split_path
        raise DataNotFoundError(f"'{missing}' not found: set --data to {prepare} and --split to one of its lists.")
    try:
        classes = [str(c) for c in json.loads(meta_path.read_text())["classes"]]
        pairs = [line.split() for line in split_path.read_text().splitlines() if line.strip()]
        pairs = [(object_id, int(label)) for object_id, label in pairs]
    except (ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"'{meta_path}' or '{split_path}' is unreadable ({type(err).__name__}): set --data to "
                            f"{prepare}.") from err
    by_label: Dict[int, List[str]] = {}
    paths: Dict[str, List[Path]] = {}
    for object_id, label in pairs:
        if not 0 <= label < len(classes):
            raise BadInputError(f"Object '{object_id}' in '{split_path}' has label {label} but meta.json names "
                                f"{len(classes)} classes: fix the list or meta.json.")
        found = sorted((int(m.group(1)), p) for p in (data / object_id).glob("view_*.png")
                       for m in [VIEW_FILE.search(p.name)] if m)
        if not found:
            raise DataNotFoundError(f"No view_XX.png under '{data / object_id}': finish rendering --data (rerun "
                                    f"tools/render_views.py) or remove the object from '{split_path}'.")
        by_label.setdefault(label, []).append(object_id)
        paths[object_id] = [p for _, p in found]
    if not pairs:
        raise BadInputError(f"'{split_path}' lists no objects: set --split to a non-empty list of --data.")
    counts = {object_id: len(p) for object_id, p in paths.items()}
    if views is None:
        first = next(iter(counts))
        other = next((o for o, n in counts.items() if n != counts[first]), None)
        if other is not None:
            raise BadInputError(f"Object '{first}' has {counts[first]} views but '{other}' has {counts[other]}: "
                                f"pass --views {min(counts.values())} to use the first views of each.")
        views = counts[first]
    short = next((o for o, n in counts.items() if n < views), None)
    if short is not None:
        raise BadInputError(f"Object '{short}' has only {counts[short]} views, fewer than --views {views}: pass "
                            f"--views {min(counts.values())} or fewer.")
    categories = {classes[label]: by_label[label] for label in sorted(by_label)}
    return categories, {o: p[:views] for o, p in paths.items()}, views


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _texts(entry: Any) -> Optional[List[str]]:
    """The sentences of one landmark entry: a list, a No Captions entry, or a dict of part -> sentences."""
    if isinstance(entry, list):
        return [str(t) for t in entry]
    if isinstance(entry, dict) and isinstance(entry.get("descriptions"), list):
        return [str(t) for t in entry["descriptions"]]
    if isinstance(entry, dict) and all(isinstance(v, list) for v in entry.values()):
        return [str(t) for v in entry.values() for t in v]
    return None


def read_landmarks(path: str, categories: Sequence[str], count: int) -> Dict[str, List[str]]:
    """The first ``count`` landmark texts of each category.

    Args:
        path: a No Captions or PointCLIP V2 landmark JSON (see the module docstring).
        categories: the category names.
        count: texts per category (L).

    Raises:
        DataNotFoundError: no such file.
        BadInputError: an unreadable file, a category it does not cover, or one with fewer than ``count`` texts.
    """
    from plugin.errors import BadInputError, DataNotFoundError

    if not os.path.isfile(path):
        raise DataNotFoundError(f"Landmark file '{path}' not found: set --landmarks to ../shared/data/text/"
                                f"nocaptions_shapenet_landmarks.json or a PointCLIP V2 prompt file.")
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError):
        table = None
    if not isinstance(table, dict):
        raise BadInputError(f"'{path}' is not a JSON object of landmark texts: set --landmarks to a No Captions or "
                            f"PointCLIP V2 landmark file.")
    lookup: Dict[str, Any] = {}
    for key, entry in table.items():
        lookup[_norm(key)] = entry
        if isinstance(entry, dict) and "name" in entry:
            lookup.setdefault(_norm(entry["name"]), entry)
    synsets = Path(path).resolve().parent / SYNSET_NAMES
    if synsets.is_file():  # ShapeNet's own names (e.g. "trash bin") of the synsets a No Captions file keys by id
        for synset, name in json.loads(synsets.read_text()).items():
            if synset in table:
                lookup.setdefault(_norm(name), table[synset])
    chosen = {}
    for category in categories:
        texts = _texts(lookup.get(_norm(category)))
        if texts is None:
            raise BadInputError(f"'{path}' has no landmark texts for category '{category}': pass a --landmarks file "
                                f"that covers every category of --data, or --kinds i2i.")
        if len(texts) < count:
            raise BadInputError(f"'{path}' has {len(texts)} landmark texts for category '{category}', fewer than "
                                f"--num-landmarks {count}: pass --num-landmarks {len(texts)} or less.")
        chosen[category] = texts[:count]
    return chosen


class ViewImages:
    """Map-style dataset: object k -> its (V,3,H,W) float32 views in [0, 1].

    Args:
        paths: per object, its view files.
    """

    def __init__(self, paths: Sequence[Sequence[Path]]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        import torch
        from PIL import Image

        views = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0 for p in self.paths[index]]
        return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)


def embed_objects(embedder: Any, paths: Sequence[Sequence[Path]], batch_size: int, workers: int, device: str,
                  bar: Any) -> Any:
    """Per-view embeddings (n,V,D) float32 on the CPU, ``batch_size`` images per forward pass.

    Args:
        embedder: an :class:`ImageEmbedder` on ``device``.
        paths: per object, its V view files.
        batch_size: images per forward pass (whole objects, at least one).
        workers: image-reading processes (0: in this process).
        device: where the embedder runs.
        bar: a tqdm bar advanced by objects.
    """
    import torch
    from torch.utils.data import DataLoader

    views = len(paths[0])
    loader = DataLoader(ViewImages(paths), batch_size=max(1, batch_size // views), num_workers=workers)
    chunks = []
    for images in loader:
        b = images.shape[0]
        chunks.append(embedder(images.flatten(0, 1).to(device)).view(b, views, -1).cpu())
        bar.update(b)
    return torch.cat(chunks)


def text_tower(embedder: Any, text_cfg: Optional[Mapping[str, Any]], device: str) -> Any:
    """The CLIP whose text tower embeds the landmarks: ``--text-encoder``'s, else the image encoder's own.

    Args:
        embedder: the image embedder.
        text_cfg: the ``--text-encoder`` block, or None to use the image encoder's CLIP.
        device: where the text tower runs.

    Raises:
        ConfigError: a non-CLIP text encoder, or one whose dimension differs from the image embeddings'.
    """
    from plugin.clip import load_clip_from_cfg
    from plugin.errors import ConfigError

    if text_cfg:
        cfg = {k: v for k, v in text_cfg.items() if k != "NAME"}
        if str(text_cfg.get("NAME", "clip")).lower() != "clip":
            raise ConfigError("--text-encoder must be a CLIP: pass NAME=clip name=<open_clip model> "
                              "pretrained=<path|tag|none>.")
        clip = load_clip_from_cfg(cfg, device, "--text-encoder")
    else:  # precompute checked that a CLIP image encoder comes without --text-encoder
        clip = embedder.clip
    if clip.embed_dim != embedder.dim:
        raise ConfigError(f"The text encoder {clip.name} gives {clip.embed_dim}-d embeddings but the image encoder "
                          f"{embedder.descriptor['name']} gives {embedder.dim}-d ones, and landmark descriptors "
                          f"compare the two: pass a --text-encoder of dimension {embedder.dim}, or --kinds i2i.")
    return clip


def stored_manifest(out: str) -> Optional[Dict[str, Any]]:
    """The manifest already in ``out``, or None when there is none or it is unreadable.

    Args:
        out: the store folder.
    """
    from plugin.clip.similarity_store import read_manifest
    from plugin.errors import UserError

    try:
        return read_manifest(out, "--out")
    except UserError:
        return None


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv``, precompute and return the exit status (2 with one sentence on bad input).

    Args:
        argv: the command line without the program name (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a RenderedViews folder")
    parser.add_argument("--split", default="train", help="the split list of --data to read (default train)")
    parser.add_argument("--out", required=True, help="the store folder (resumable)")
    parser.add_argument("--encoder", nargs="+", required=True, metavar="KEY=VALUE",
                        help="image encoder block, e.g. NAME=timm name=tf_efficientnet_lite0 "
                             "pretrained=efficientnet_lite0_package, or NAME=clip name=ViT-B-32 pretrained=<path>")
    parser.add_argument("--text-encoder", nargs="+", default=None, metavar="KEY=VALUE",
                        help="CLIP for the landmark texts when the image encoder has no text tower")
    parser.add_argument("--landmarks", default=None, help="landmark JSON (needed by i2l2)")
    parser.add_argument("--num-landmarks", type=int, default=128, help="landmark texts L per category")
    parser.add_argument("--kinds", nargs="+", choices=("i2i", "i2l2"), default=None,
                        help="similarities to compute (default: i2i, and i2l2 when --landmarks is given)")
    parser.add_argument("--views", type=int, default=None, help="keep the first N views of each object")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float32", help="storage precision")
    parser.add_argument("--block", type=int, default=256, help="rows per block of the similarity products")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=2, help="image-reading processes (0: none)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    from plugin.errors import UserError

    for option, value, minimum in (("--num-landmarks", args.num_landmarks, 1), ("--views", args.views, 1),
                                   ("--block", args.block, 1), ("--batch-size", args.batch_size, 1),
                                   ("--workers", args.workers, 0)):
        if value is not None and value < minimum:
            print(f"error: {option} is {value}: pass an integer >= {minimum}.", file=sys.stderr)
            return 2
    try:
        summary = precompute(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def precompute(args: argparse.Namespace) -> str:
    """Embed, compare and write what ``args.out`` still lacks; returns a one-line summary.

    Args:
        args: the parsed command line.

    Raises:
        UserError: bad input, a missing file, or an unwritable ``--out``.
    """
    import torch
    from tqdm import tqdm

    from plugin.clip import encode_prompts, i2i_similarity, i2l2_similarity, landmark_descriptors
    from plugin.clip import similarity_store as store
    from plugin.errors import ConfigError
    from plugin.io import file_digest, save_json
    from plugin.models.backbones.image_embedders import build_image_embedder

    kinds = args.kinds or (["i2i", "i2l2"] if args.landmarks else ["i2i"])
    if "i2l2" in kinds and not args.landmarks:
        raise ConfigError("--kinds i2l2 needs landmark texts: pass --landmarks (e.g. "
                          "../shared/data/text/nocaptions_shapenet_landmarks.json) or --kinds i2i.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} but no CUDA device is available: pass --device cpu.")
    categories, paths, views = read_objects(Path(args.data), args.split, args.views)
    texts = read_landmarks(args.landmarks, list(categories), args.num_landmarks) if "i2l2" in kinds else {}
    image_cfg = parse_block(args.encoder, "--encoder")
    text_cfg = parse_block(args.text_encoder, "--text-encoder") if args.text_encoder else None
    if "i2l2" in kinds and not text_cfg and str(image_cfg.get("NAME", "")).lower() != "clip":
        raise ConfigError(f"The image encoder {image_cfg.get('name')} has no text tower for the i2l2 landmarks: "
                          f"pass --text-encoder NAME=clip name=... pretrained=... of the same embedding dimension, "
                          f"or --kinds i2i.")
    embedder = build_image_embedder(image_cfg, "--encoder", device)
    clip = text_tower(embedder, text_cfg, device) if "i2l2" in kinds else None
    manifest = store.make_manifest(
        embedder.descriptor, views, categories, kinds, args.dtype,
        landmarks=args.num_landmarks if "i2l2" in kinds else None,
        landmark_file=args.landmarks if "i2l2" in kinds else None,
        landmark_digest=file_digest(args.landmarks)[:24] if "i2l2" in kinds else None,
        text_encoder=({"name": clip.name, "weights": clip.weights, "text": clip.text_fingerprint()}
                      if clip is not None else None))
    out = str(args.out)
    todo = {}
    for category, ids in categories.items():
        stale = [kind for kind in [store.EMBEDDINGS, *kinds] if store.stored_fingerprint(out, kind, category)
                 != store.file_fingerprint(manifest, kind, category, ids)]
        if stale:
            todo[category] = stale
    embed_seconds = compare_seconds = 0.0
    embedded = compared = 0
    to_embed = sum(len(categories[c]) for c, stale in todo.items() if store.EMBEDDINGS in stale)
    with tqdm(total=to_embed, desc="embed", unit="object", disable=None) as bar:
        for category in tqdm(todo, desc="categories", unit="category", disable=None, leave=False):
            ids, stale = categories[category], todo[category]
            fp = {kind: store.file_fingerprint(manifest, kind, category, ids) for kind in stale}
            if store.EMBEDDINGS in stale:
                start = time.perf_counter()
                emb = embed_objects(embedder, [paths[o] for o in ids], args.batch_size, args.workers, device, bar)
                embed_seconds += time.perf_counter() - start
                embedded += len(ids)
                store.write_category(out, store.EMBEDDINGS, category, ids, emb, args.dtype, fp[store.EMBEDDINGS])
            # the stored (possibly float16) embeddings, so a resumed run compares exactly what a fresh one does
            record = store.read_category(out, store.EMBEDDINGS, category)
            emb = torch.from_numpy(np.asarray(record["array"], dtype=np.float32)).to(device)
            start = time.perf_counter()
            for kind in (k for k in kinds if k in stale):
                if kind == "i2i":
                    matrix = i2i_similarity(emb, emb, args.block)
                else:
                    desc = landmark_descriptors(emb, encode_prompts(clip, texts[category]).to(device))
                    matrix = i2l2_similarity(desc, desc, args.block)
                store.write_category(out, kind, category, ids, matrix, args.dtype, fp[kind])
            if any(k in stale for k in kinds):
                compare_seconds += time.perf_counter() - start
                compared += len(ids)
    total = sum(len(ids) for ids in categories.values())
    if stored_manifest(out) != manifest:  # written last, and only when it changes
        store.write_manifest(out, manifest)
    if not todo:
        return f"{out}: {total} objects of {len(categories)} categories already done, nothing to do"
    throughput = {"device": device, "encoder": embedder.descriptor["name"], "views": views, "kinds": kinds,
                  "threads": torch.get_num_threads(), "objects_embedded": embedded, "objects_compared": compared,
                  "embedding_objects_per_s": embedded / embed_seconds if embed_seconds else None,
                  "similarity_objects_per_s": compared / compare_seconds if compare_seconds else None}
    save_json(throughput, os.path.join(out, "throughput.json"), "--out")
    rates = [f"{name} " + ("-" if value is None else f"{value:.1f}") + " objects/s"
             for name, value in (("embedding", throughput["embedding_objects_per_s"]),
                                 ("similarity", throughput["similarity_objects_per_s"]))]
    return f"{out}: {total} objects of {len(categories)} categories ({len(todo)} computed); {', '.join(rates)}"


if __name__ == "__main__":
    sys.exit(main())
