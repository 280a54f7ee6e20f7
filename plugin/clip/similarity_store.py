"""On-disk store of precomputed per-view image embeddings and within-category 3D-3D similarity matrices.

One folder is one run of ``tools/precompute_similarity.py``::

    <dir>/manifest.json            settings, categories and a fingerprint (see :func:`make_manifest`)
    <dir>/embeddings/<category>.npz   ids (n,) str, embeddings (n,V,D) L2-normalised per view, fingerprint
    <dir>/i2i/<category>.npz          ids (n,) str, matrix (n,n) (Eq. 2), fingerprint
    <dir>/i2l2/<category>.npz         ids (n,) str, matrix (n,n) (Eqs. 3-4), fingerprint

Every category file stores its object ids explicitly (never "sorted directory order") and the
fingerprint of what made it (:func:`file_fingerprint`: the settings that file depends on, its category
and its ids), so the precompute resumes per category and a reader never mixes files of two runs. The
manifest is written last; its ``fingerprint`` is the digest of all its other entries. Categories are
named by the dataset's class names. Files are written atomically (:mod:`plugin.io`).

Readers open a folder with :meth:`SimilarityStore.open`; tests build a store in memory with the plain
constructor.
"""
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import BadInputError, ConfigError, DataNotFoundError
from ..io import fingerprint, save_json, save_npz

VERSION = 1
KINDS = ("i2i", "i2l2")
EMBEDDINGS = "embeddings"  # the folder (and file kind) of the per-view embeddings
DTYPES = ("float16", "float32")
MANIFEST = "manifest.json"
DEFAULT_KEY = "model.similarity.dir"
PRECOMPUTE = "python tools/precompute_similarity.py"
# manifest entries each file kind depends on (with its category and ids): what its fingerprint covers
FILE_SETTINGS = {EMBEDDINGS: ("version", "encoder", "views", "dtype"),
                 "i2i": ("version", "encoder", "views", "dtype"),
                 "i2l2": ("version", "encoder", "views", "dtype", "landmarks", "landmark_digest", "text_encoder")}


def ids_digest(ids: Sequence[str]) -> str:
    """Short digest of an ordered list of object ids.

    Args:
        ids: the ids, in row order.
    """
    return fingerprint([str(i) for i in ids], sort_keys=False)[:16]


def file_fingerprint(settings: Mapping[str, Any], kind: str, category: str, ids: Sequence[str]) -> str:
    """Fingerprint of one category file: the settings of :data:`FILE_SETTINGS` ``[kind]``, the category and its ids.

    Args:
        settings: the manifest (or the settings part of it).
        kind: ``embeddings``, ``i2i`` or ``i2l2``.
        category: the category name.
        ids: its object ids in row order.
    """
    parts = {name: settings.get(name) for name in FILE_SETTINGS[kind]}
    return fingerprint({"kind": kind, "category": str(category), "ids": ids_digest(ids), **parts})[:24]


def make_manifest(encoder: Mapping[str, Any], views: int, categories: Mapping[str, Sequence[str]],
                  kinds: Sequence[str] = KINDS, dtype: str = "float32", landmarks: Optional[int] = None,
                  landmark_file: Optional[str] = None, landmark_digest: Optional[str] = None,
                  text_encoder: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The manifest of a store, its ``fingerprint`` included.

    Args:
        encoder: descriptor of the image encoder (``ImageEmbedder.descriptor``).
        views: views V per object.
        categories: category name -> object ids in row order (insertion order = category index).
        kinds: the similarity kinds stored (``i2i``, ``i2l2``).
        dtype: ``float16`` or ``float32``: how embeddings and matrices are stored.
        landmarks: landmark texts L per category for ``i2l2``, None without it.
        landmark_file: the landmark JSON the texts came from.
        landmark_digest: SHA-256 of that file's contents.
        text_encoder: descriptor of the text tower of the landmarks when it is not the image encoder's CLIP.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"Similarity store dtype '{dtype}' is not one of {', '.join(DTYPES)}: pick one of them.")
    manifest = {"version": VERSION, "encoder": dict(encoder), "views": int(views), "kinds": list(kinds),
                "dtype": dtype, "landmarks": None if landmarks is None else int(landmarks),
                "landmark_file": landmark_file, "landmark_digest": landmark_digest,
                "text_encoder": None if text_encoder is None else dict(text_encoder),
                "categories": [{"name": str(name), "count": len(ids), "ids_digest": ids_digest(ids)}
                               for name, ids in categories.items()]}
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists: equal to what read_manifest returns
    manifest["fingerprint"] = fingerprint(manifest)[:24]
    return manifest


def _category_path(root: str, kind: str, category: str) -> str:
    if not category or os.sep in category or category.startswith("."):
        raise BadInputError(f"Category name '{category}' cannot name a file: rename the class in the dataset's "
                            f"meta.json.")
    return os.path.join(root, kind, f"{category}.npz")


def write_category(root: str, kind: str, category: str, ids: Sequence[str], array: Any, dtype: str = "float32",
                   file_fp: str = "") -> str:
    """Write one category file atomically; returns its path.

    Args:
        root: the store folder.
        kind: ``embeddings`` (``array`` (n,V,D)) or a similarity kind (``array`` (n,n)).
        category: the category name (the file name).
        ids: the n object ids, in row order.
        array: the embeddings or the matrix (NumPy or torch).
        dtype: ``float16`` or ``float32`` on disk.
        file_fp: the file's :func:`file_fingerprint` (resuming compares it).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"Similarity store dtype '{dtype}' is not one of {', '.join(DTYPES)}: pick one of them.")
    if torch.is_tensor(array):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=dtype)
    if array.shape[0] != len(ids):
        raise ValueError(f"{kind}/{category}: {array.shape[0]} rows for {len(ids)} ids.")
    path = _category_path(root, kind, category)
    save_npz(path, "--out", ids=np.asarray([str(i) for i in ids]),
             **{EMBEDDINGS if kind == EMBEDDINGS else "matrix": array}, fingerprint=np.asarray(file_fp))
    return path


def read_category(root: str, kind: str, category: str, with_array: bool = True) -> Optional[Dict[str, Any]]:
    """``{"ids": [...], "array": ndarray, "fingerprint": str}`` of one category file, None when absent or unreadable.

    Args:
        root: the store folder.
        kind: ``embeddings`` or a similarity kind.
        category: the category name.
        with_array: read the array too (False: only the ids and the fingerprint, ``array`` None).
    """
    path = _category_path(root, kind, category)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as stored:
            return {"ids": [str(i) for i in stored["ids"]],
                    "array": stored[EMBEDDINGS if kind == EMBEDDINGS else "matrix"] if with_array else None,
                    "fingerprint": str(stored["fingerprint"])}
    except (OSError, ValueError, KeyError, EOFError):  # a truncated or foreign file counts as absent
        return None


def stored_fingerprint(root: str, kind: str, category: str) -> Optional[str]:
    """The fingerprint in one category file without reading its array; None when absent or unreadable.

    Args:
        root: the store folder.
        kind: ``embeddings`` or a similarity kind.
        category: the category name.
    """
    path = _category_path(root, kind, category)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as stored:
            return str(stored["fingerprint"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


def write_manifest(root: str, manifest: Mapping[str, Any]) -> None:
    """Write ``<root>/manifest.json`` atomically (last, once every category file is in place).

    Args:
        root: the store folder.
        manifest: from :func:`make_manifest`.
    """
    save_json(dict(manifest), os.path.join(root, MANIFEST), "--out")


def read_manifest(root: str, key: str = DEFAULT_KEY) -> Dict[str, Any]:
    """The manifest of the store at ``root``.

    Args:
        root: the store folder.
        key: the config key (or option) that named ``root``, for the messages.

    Raises:
        DataNotFoundError: no store there.
        BadInputError: the manifest is unreadable or of another version.
    """
    path = os.path.join(str(root), MANIFEST)
    if not os.path.isfile(path):
        raise DataNotFoundError(f"No similarity store at '{root}' (no {MANIFEST}): set {key} to the --out folder of "
                                f"`{PRECOMPUTE} --data <views folder> --out <folder>`.")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise BadInputError(f"'{path}' is unreadable ({type(err).__name__}): rerun `{PRECOMPUTE}` into that "
                            f"folder or set {key} to another store.") from err
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION or "categories" not in manifest:
        raise BadInputError(f"'{path}' is not a version-{VERSION} similarity store manifest: rerun `{PRECOMPUTE}` "
                            f"into a new folder and set {key} to it.")
    return manifest


class SimilarityStore:
    """Read side of a similarity store: object rows, per-view embeddings and per-category matrices.

    Open a folder with :meth:`open`. The plain constructor also builds a store in memory, without
    files (for tests)::

        manifest = make_manifest({"kind": "test"}, views=2, categories={"a": ["x", "y"], "b": ["z"]}, kinds=["i2i"])
        store = SimilarityStore(manifest, None, {"i2i": [torch.eye(2), torch.ones(1, 1)]},
                                ids={"a": ["x", "y"], "b": ["z"]})

    Args:
        manifest: the manifest (:func:`make_manifest`); without ``categories`` the categories are named
            ``"0"``, ``"1"``, ... after the matrices of the first kind.
        root: the store folder, or None for a store in memory.
        matrices: kind -> one (n,n) matrix per category, in category order (in memory; read from ``root``
            otherwise).
        ids: category -> object ids in row order (in memory; read from ``root`` otherwise).
        embeddings: category -> (n,V,D) embeddings (in memory; read from ``root`` otherwise).
        key: the config key that named ``root``, for the messages.

    Attributes:
        manifest: the manifest.
        categories: category names, in category-index order.
        fingerprint: the manifest's fingerprint.
        root: the folder, or None.
    """

    def __init__(self, manifest: Mapping[str, Any], root: Optional[str] = None,
                 matrices: Optional[Mapping[str, Sequence[torch.Tensor]]] = None,
                 ids: Optional[Mapping[str, Sequence[str]]] = None,
                 embeddings: Optional[Mapping[str, np.ndarray]] = None, key: str = DEFAULT_KEY) -> None:
        self.manifest: Dict[str, Any] = dict(manifest)
        self.root = None if root is None else str(root)
        self.key = key
        if "categories" in self.manifest:
            self.categories: List[str] = [str(c["name"]) for c in self.manifest["categories"]]
        else:
            first = next(iter((matrices or {}).values()), [])
            self.categories = [str(i) for i in range(len(first))]
        self.fingerprint: str = str(self.manifest.get("fingerprint", ""))
        self._matrices: Dict[Tuple[str, int], torch.Tensor] = {}
        for kind, per_category in (matrices or {}).items():
            for index, matrix in enumerate(per_category):
                self._matrices[(kind, index)] = torch.as_tensor(matrix, dtype=torch.float32)
        self._ids: Dict[str, List[str]] = {str(c): [str(i) for i in v] for c, v in (ids or {}).items()}
        self._embeddings = {str(c): np.asarray(v, dtype=np.float32) for c, v in (embeddings or {}).items()}
        self._rows: Dict[str, Dict[str, int]] = {}

    @classmethod
    def open(cls, root: str, key: str = DEFAULT_KEY) -> "SimilarityStore":
        """The store written by ``tools/precompute_similarity.py`` into ``root``.

        Args:
            root: the store folder (its ``--out``).
            key: the config key that named it, for the messages.

        Raises:
            DataNotFoundError: no store there.
            BadInputError: an unreadable manifest.
        """
        return cls(read_manifest(root, key), root, key=key)

    def _refuse_stale(self, what: str) -> BadInputError:
        return BadInputError(f"The similarity store at '{self.root or 'memory'}' is incomplete or mixes two runs "
                             f"({what}): rerun `{PRECOMPUTE}` into that folder or set {self.key} to another store.")

    def _category_index(self, category: str) -> int:
        try:
            return self.categories.index(str(category))
        except ValueError:
            raise BadInputError(f"Category '{category}' is not in the similarity store at '{self.root}' (it has "
                                f"{', '.join(self.categories)}), which was made for other objects: rerun "
                                f"`{PRECOMPUTE}` on this dataset or set {self.key} to its store.") from None

    def _read(self, kind: str, category: str, with_array: bool = True) -> Dict[str, Any]:
        """A category file, checked against the manifest."""
        index = self._category_index(category)
        if self.root is None:
            raise self._refuse_stale(f"{kind} of '{category}' was not given to the in-memory store")
        record = read_category(self.root, kind, category, with_array)
        if record is None:
            raise self._refuse_stale(f"{kind}/{category}.npz is missing or unreadable")
        entry = self.manifest["categories"][index]
        if (len(record["ids"]) != entry.get("count") or ids_digest(record["ids"]) != entry.get("ids_digest")
                or record["fingerprint"] != file_fingerprint(self.manifest, kind, category, record["ids"])):
            raise self._refuse_stale(f"{kind}/{category}.npz was made with other settings or objects")
        return record

    def ids(self, category: str) -> List[str]:
        """Object ids of ``category`` in row order.

        Args:
            category: the category name.
        """
        if category not in self._ids:  # every file of a category holds the same ids (the manifest's digest)
            self._category_index(category)
            kinds = [EMBEDDINGS, *self.kinds]
            kind = next((k for k in kinds if os.path.isfile(_category_path(self.root or "", k, category))), kinds[0])
            self._ids[category] = self._read(kind, category, with_array=False)["ids"]
        return self._ids[category]

    @property
    def kinds(self) -> List[str]:
        """The similarity kinds this store holds."""
        if "kinds" in self.manifest:
            return list(self.manifest["kinds"])
        return sorted({kind for kind, _ in self._matrices})

    def rows(self, object_ids: Sequence[str], categories: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Category index and row of each object in the store.

        Args:
            object_ids: the objects' ids.
            categories: their category names (the dataset's class names).

        Returns:
            ``(category index (M,) int64, row (M,) int64)``.

        Raises:
            BadInputError: an object or category is not in the store.
        """
        if len(object_ids) != len(categories):
            raise ValueError(f"{len(object_ids)} object ids but {len(categories)} categories.")
        cat_index, row = np.empty(len(object_ids), np.int64), np.empty(len(object_ids), np.int64)
        for k, (object_id, category) in enumerate(zip(object_ids, categories)):
            category = str(category)
            cat_index[k] = self._category_index(category)
            if category not in self._rows:
                self._rows[category] = {i: r for r, i in enumerate(self.ids(category))}
            found = self._rows[category].get(str(object_id))
            if found is None:
                raise BadInputError(f"Object '{object_id}' of category '{category}' is not in the similarity store "
                                    f"at '{self.root}', which was made for other objects: rerun `{PRECOMPUTE}` on "
                                    f"this dataset or set {self.key} to its store.")
            row[k] = found
        return cat_index, row

    def embeddings(self, category: str) -> np.ndarray:
        """Per-view embeddings (n,V,D) float32 of ``category``, L2-normalised per view, rows as :meth:`ids`.

        Read from disk at every call (not cached: a large category is hundreds of MB); keep the result.

        Args:
            category: the category name.
        """
        if category in self._embeddings:
            return self._embeddings[category]
        return np.asarray(self._read(EMBEDDINGS, category)["array"], dtype=np.float32)

    def matrix(self, kind: str, category_index: int) -> torch.Tensor:
        """The (n,n) float32 similarity matrix of a category, cached after the first read.

        Args:
            kind: ``i2i`` or ``i2l2``.
            category_index: index into :attr:`categories`.

        Raises:
            ConfigError: the store holds no matrices of ``kind``.
        """
        cached = self._matrices.get((kind, int(category_index)))
        if cached is not None:
            return cached
        if kind not in self.kinds:
            raise ConfigError(f"The similarity store at '{self.root}' holds {', '.join(self.kinds) or 'no'} "
                              f"matrices, not {kind}: rerun `{PRECOMPUTE}` with --kinds {kind} or set the "
                              f"similarity kind to one it holds.")
        record = self._read(kind, self.categories[int(category_index)])
        matrix = torch.from_numpy(np.asarray(record["array"], dtype=np.float32))
        self._ids.setdefault(self.categories[int(category_index)], record["ids"])
        self._matrices[(kind, int(category_index))] = matrix
        return matrix

    def check(self, expected: Mapping[str, Any]) -> None:
        """Refuse a store whose manifest settings differ from ``expected``.

        Args:
            expected: manifest entries this use needs, e.g. ``{"views": 12, "landmarks": 128}`` or
                ``{"encoder": embedder.descriptor}``; a ``kinds`` entry must be a subset of the stored kinds.

        Raises:
            ConfigError: one sentence naming the first differing entry and the fix.
        """
        for name, wanted in expected.items():
            wanted = json.loads(json.dumps(wanted, default=str))
            stored = self.manifest.get(name)
            if name == "kinds":
                missing = [k for k in ([wanted] if isinstance(wanted, str) else wanted) if k not in self.kinds]
                if missing:
                    raise ConfigError(f"The similarity store at '{self.root}' holds {', '.join(self.kinds)} "
                                      f"matrices, not {', '.join(missing)}: rerun `{PRECOMPUTE}` with --kinds "
                                      f"{' '.join(missing)} or set {self.key} to a store that has them.")
            elif stored != wanted:
                raise ConfigError(f"The similarity store at '{self.root}' was made with {name} {stored}, not "
                                  f"{wanted} as this run needs: rerun `{PRECOMPUTE}` with the same settings or "
                                  f"set {self.key} to a store made with them.")
