"""Cross-modal retrieval figures: top-k and mean average precision (mAP) of ranked galleries, in percent.

A query ranks its gallery by similarity (higher first). Ties are broken against the query: among items of
equal similarity the irrelevant ones rank first, so a collapsed model (every similarity equal) scores its worst
case instead of a figure that depends on the order of the gallery. With that order,

- top-k is the share of queries with a relevant item among their k first (all of them when the gallery is
  smaller than k);
- the average precision of a query is the mean over its relevant items of the precision at their rank,
  AP = 1/R sum_{relevant at rank p} (relevant items at ranks <= p) / p, and mAP the mean over queries.

:func:`cross_modal_retrieval` applies them to images and shapes (3D objects) in both directions, with one
of two galleries:

- ``full`` (default): every image ranks every shape of the split, and every shape every image;
- ``batch``: the release's protocol ("No Captions, No Problem", Tab. 2): the samples are shuffled (seeded)
  into batches of 128 and each query ranks only the items of its own batch (:func:`batch_gallery`).
"""
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch

from ..errors import BadInputError, ConfigError

GALLERIES = ("full", "batch")
QUERY_BLOCK = 1024  # queries ranked at a time in the full gallery, so memory stays (block, G)


class QueryOutcomes(NamedTuple):
    """Per-query results of ranking a gallery.

    Attributes:
        rank: (Q,) int64 1-based rank of each query's best-ranked relevant item.
        average_precision: (Q,) float64 AP of each query in [0, 1].
    """

    rank: torch.Tensor
    average_precision: torch.Tensor


def ranked_relevance(similarity: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Relevance of each query's gallery items in ranked order (Q, G) bool, ties broken against the query.

    Args:
        similarity: (Q, G) scores, higher is better.
        relevant: (Q, G) bool, whether gallery item g is a right answer for query q.
    """
    if similarity.dim() != 2 or relevant.shape != similarity.shape:
        raise BadInputError(f"Retrieval needs similarity and relevance of the same shape (Q, G), got "
                            f"{tuple(similarity.shape)} and {tuple(relevant.shape)}: pass one row per query.")
    if not torch.isfinite(similarity).all():
        raise BadInputError("The retrieval similarities hold NaN or infinite values: check the embeddings of "
                            "the model's encode_3d and encode_image.")
    relevant = relevant.bool()
    # two stable sorts: irrelevant before relevant, then by similarity; equal similarities keep the first order
    order = torch.argsort(relevant.to(torch.uint8), dim=1, stable=True)
    by_score = torch.argsort(similarity.gather(1, order), dim=1, descending=True, stable=True)
    return relevant.gather(1, order.gather(1, by_score))


def query_outcomes(similarity: torch.Tensor, relevant: torch.Tensor) -> QueryOutcomes:
    """Rank of the first relevant item and average precision of every query.

    Args:
        similarity: (Q, G) scores, higher is better.
        relevant: (Q, G) bool; every query needs at least one relevant item.
    """
    ranked = ranked_relevance(similarity, relevant)
    count = ranked.sum(dim=1)
    if bool((count == 0).any()):
        raise BadInputError(f"{int((count == 0).sum())} retrieval queries have no relevant item in their gallery: "
                            f"each query's own object must be in its gallery.")
    rank = ranked.to(torch.uint8).argmax(dim=1) + 1  # argmax gives the first True
    hits = ranked.double()
    precision = hits.cumsum(dim=1) / torch.arange(1, ranked.shape[1] + 1, dtype=torch.float64, device=hits.device)
    return QueryOutcomes(rank.long(), (precision * hits).sum(dim=1) / count.double())


def summarize(outcomes: QueryOutcomes, ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """``top<k>`` for each k and ``map``, in percent, over the queries of ``outcomes``.

    Args:
        outcomes: per-query results (:func:`query_outcomes`).
        ks: the k values of top-k.
    """
    figures = {f"top{int(k)}": 100.0 * float((outcomes.rank <= int(k)).double().mean()) for k in ks}
    figures["map"] = 100.0 * float(outcomes.average_precision.mean())
    return figures


def retrieval_metrics(similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Top-k and mAP in percent of Q queries each ranking the same gallery of G items (ties against the query).

    Args:
        similarity: (Q, G) scores, higher is better.
        relevant: (Q, G) bool, whether gallery item g is a right answer for query q (at least one per query).
        ks: the k values of top-k.

    Returns:
        ``top<k>`` for each k and ``map``.
    """
    return summarize(query_outcomes(similarity, relevant), ks)


def check_protocol(gallery: str, batch_size: int = 128, seed: int = 0) -> None:
    """Refuse (:class:`ConfigError`, one sentence) a gallery other than :data:`GALLERIES`, or a ``batch`` protocol
    whose batch size or seed is not an integer (>= 1, >= 0)."""
    if gallery not in GALLERIES:
        raise ConfigError(f"retrieval.gallery is {gallery!r}: set it to full (the whole split) or batch (the "
                          f"release's shuffled batches of retrieval.batch_size).")
    for key, value, minimum in (("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"retrieval.{key} is {value!r} but must be an integer >= {minimum}: set it in the "
                              f"retrieval block or with retrieval.{key}=VALUE.")


def batch_gallery(num: int, batch_size: int = 128, seed: int = 0) -> List[torch.Tensor]:
    """The release's protocol: the sample indices of each batch of a seeded shuffle of ``num`` samples.

    Each query's gallery is its own batch (its own object and the rest of the batch). The last batch holds
    the remainder (``num`` mod ``batch_size`` samples when that is not 0); no sample is dropped.

    Args:
        num: the number of samples.
        batch_size: samples per batch (128 in the release).
        seed: seed of the shuffle.
    """
    check_protocol("batch", batch_size, seed)
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return list(order.split(batch_size))


def _ranking(queries: torch.Tensor, gallery: torch.Tensor, query_objects: torch.Tensor,
             gallery_objects: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor,
             block: int = QUERY_BLOCK) -> Tuple[QueryOutcomes, QueryOutcomes]:
    """Outcomes of ``queries`` ranking ``gallery``, by object and by category, ``block`` queries at a time."""
    parts = []
    for rows in torch.arange(len(queries), device=queries.device).split(block):
        similarity = queries[rows] @ gallery.T
        parts.append((query_outcomes(similarity, query_objects[rows, None] == gallery_objects[None, :]),
                      query_outcomes(similarity, query_labels[rows, None] == gallery_labels[None, :])))
    return _concat([p[0] for p in parts]), _concat([p[1] for p in parts])


def _concat(parts: Sequence[QueryOutcomes]) -> QueryOutcomes:
    return QueryOutcomes(*(torch.cat(field) for field in zip(*parts)))


def cross_modal_retrieval(images: torch.Tensor, shapes: torch.Tensor, shape_of: torch.Tensor,
                          image_labels: torch.Tensor, shape_labels: torch.Tensor, gallery: str = "full",
                          batch_size: int = 128, seed: int = 0, ks: Sequence[int] = (1, 5)
                          ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
    """Image->shape and shape->image retrieval of one split, by object and (top-1) by category.

    Similarities are cosine similarities (the features are L2-normalised here). An image is relevant to a
    shape, and the shape to it, when it shows that shape's object; category top-1 counts a query whose
    first-ranked item has its label.

    - ``full``: the N images rank the U shapes, and the U shapes rank the N images (a shape seen in several
      images, as in Pix3D, is relevant to each of them).
    - ``batch``: the N samples (an image and its shape each) are shuffled into batches (:func:`batch_gallery`);
      within a batch every sample's image ranks the batch's shapes and every sample's shape the batch's images.
      A shape appearing twice in one batch is two gallery items, both relevant.

    Args:
        images: (N, D) image features, one per sample.
        shapes: (U, D) features of the U distinct shapes (objects) of the split.
        shape_of: (N,) int64 index into ``shapes`` of each image's object.
        image_labels: (N,) category of each image.
        shape_labels: (U,) category of each shape.
        gallery: ``full`` or ``batch``.
        batch_size: samples per batch of the ``batch`` protocol.
        seed: seed of the ``batch`` protocol's shuffle.
        ks: the k values of top-k.

    Returns:
        ``(figures, ranks)``: figures ``i2s_top<k>``, ``i2s_map``, ``s2i_top<k>``, ``s2i_map``,
        ``i2s_category_top1``, ``s2i_category_top1`` (percent), ``queries_i2s``, ``queries_s2i``; ranks
        ``i2s`` (N,) and ``s2i`` (U,) in ``full``, (N,) per sample in ``batch``: the 1-based rank of each
        query's first relevant item, in sample (or shape) order.
    """
    check_protocol(gallery, batch_size, seed)
    n, u = len(images), len(shapes)
    shape_of = shape_of.long().to(images.device)
    if images.dim() != 2 or shapes.dim() != 2 or images.shape[1] != shapes.shape[1] or shape_of.shape != (n,) \
            or image_labels.shape != (n,) or shape_labels.shape != (u,) or n == 0:
        raise BadInputError(f"Retrieval needs images (N, D), shapes (U, D), shape_of (N,) and labels (N,) and (U,), "
                            f"got {tuple(images.shape)}, {tuple(shapes.shape)}, {tuple(shape_of.shape)}, "
                            f"{tuple(image_labels.shape)} and {tuple(shape_labels.shape)}: embed every sample.")
    if bool(((shape_of < 0) | (shape_of >= u)).any()):
        raise BadInputError(f"shape_of indexes {u} shapes but holds {int(shape_of.min())}..{int(shape_of.max())}: "
                            f"map each image to the row of its object's shape.")
    images = torch.nn.functional.normalize(images.double(), dim=1)
    shapes = torch.nn.functional.normalize(shapes.double(), dim=1)
    image_labels, shape_labels = image_labels.to(images.device), shape_labels.to(images.device)
    shape_ids = torch.arange(u, device=images.device)
    if gallery == "full":
        outcomes = {"i2s": _ranking(images, shapes, shape_of, shape_ids, image_labels, shape_labels),
                    "s2i": _ranking(shapes, images, shape_ids, shape_of, shape_labels, image_labels)}
    else:
        parts, batches = {"i2s": [], "s2i": []}, [rows.to(images.device) for rows in batch_gallery(n, batch_size, seed)]
        for rows in batches:
            objects, labels, object_labels = shape_of[rows], image_labels[rows], shape_labels[shape_of[rows]]
            parts["i2s"].append(_ranking(images[rows], shapes[objects], objects, objects, labels, object_labels))
            parts["s2i"].append(_ranking(shapes[objects], images[rows], objects, objects, object_labels, labels))
        restore = torch.argsort(torch.cat(batches))  # the outcomes back in sample order
        outcomes = {key: tuple(QueryOutcomes(*(field[restore] for field in _concat(side))) for side in zip(*value))
                    for key, value in parts.items()}
    figures: Dict[str, float] = {}
    for direction, (by_object, by_category) in outcomes.items():
        figures.update({f"{direction}_{key}": value for key, value in summarize(by_object, ks).items()})
        figures[f"{direction}_category_top1"] = summarize(by_category, (1,))["top1"]
        figures[f"queries_{direction}"] = len(by_object.rank)
    return figures, {direction: pair[0].rank.cpu() for direction, pair in outcomes.items()}
