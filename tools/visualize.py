"""Figures of runs: Pic@Point correspondence heatmaps (the paper's Fig. 4), feature embeddings, I2P-MAE masking and
Cross-MoST self-training curves.

Examples::

    python tools/visualize.py correspondence --cfg cfgs/shapenet/pic_at_point-dgcnn.yaml \\
        --load_path log/shapenet/pic_at_point-dgcnn-<time>/ckpt_best.pth \\
        --object data/views/shapenet/02691156-<model> --view 0 --out heat.png
    python tools/visualize.py features --features log/modelnet40/<svm run>/features_train.npz \\
        log/modelnet40/<svm run>/features_test.npz --method tsne \\
        --classes ../shared/data/modelnet40_normal_resampled/modelnet40_shape_names.txt --out emb.png
    python tools/visualize.py i2p-mask --load-path log/shapenet/i2p_mae-<time>/ckpt_best.pth \\
        --clouds chair.npy airplane.npy --out masking.png
    python tools/visualize.py selftrain --run log/modelnet40/cross_most-<time> --out self_training.png

``correspondence`` builds the model of ``--cfg`` (plus ``key=value`` overrides, which must match the run's),
loads the checkpoint's ``model`` state and draws the cosine similarity between one 3D region's local embedding
and every image region of the view. ``features`` draws one t-SNE or PCA panel per ``features_*.npz`` of
``mode=svm``. ``i2p-mask`` draws I2P-MAE's masking (supplementary Fig. 5): per object the input, random masking, the
attention cloud S, the 2D-guided mask and the reconstruction, from a pre-training checkpoint (the model is built
from the config stored in it) or, with ``--cfg`` alone, a randomly initialised model. ``selftrain`` draws the
Cross-MoST training curves (the paper's Figs. 3-4: accuracy, entropy, bias, pseudo-labels, losses) of a run folder's
``history.json`` (default ``--out``: ``<run>/self_training.png``). Errors the user can fix (a missing, corrupt or
foreign checkpoint, an unreadable cloud or history, an unwritable ``--out``) are printed as one sentence (exit
status 2).
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    corr = commands.add_parser("correspondence", help="similarity heatmap of one 3D region over a rendered view")
    corr.add_argument("--cfg", required=True, help="the pre-training YAML, e.g. cfgs/shapenet/pic_at_point-dgcnn.yaml")
    corr.add_argument("--load_path", required=True, help="checkpoint of mode=pretrain (ckpt_best.pth/ckpt_latest.pth)")
    corr.add_argument("--object", required=True, help="an object folder written by tools/render_views.py")
    corr.add_argument("--view", type=int, default=0, help="index of the rendered view")
    corr.add_argument("--point", type=int, default=None,
                      help="index of the 3D region (default: the one nearest the image centre)")
    corr.add_argument("--out", required=True, help="output PNG")
    corr.add_argument("--dpi", type=int, default=100, help="dots per inch (the PNG is 10 x 4.6 inches)")
    corr.add_argument("overrides", nargs="*", help="key=value config overrides, as used for the run")
    feats = commands.add_parser("features", help="t-SNE or PCA scatter of SVM features coloured by class")
    feats.add_argument("--features", nargs="+", required=True, help="features_*.npz files, one panel each")
    feats.add_argument("--method", choices=("tsne", "pca"), default="tsne", help="2D projection (default tsne)")
    feats.add_argument("--classes", default=None, help="class names: one a line, or a meta.json with 'classes'")
    feats.add_argument("--seed", type=int, default=0, help="random state of t-SNE and PCA")
    feats.add_argument("--out", required=True, help="output PNG")
    feats.add_argument("--dpi", type=int, default=100, help="dots per inch")
    mask = commands.add_parser("i2p-mask", help="I2P-MAE masking: input, random mask, S, guided mask, reconstruction")
    mask.add_argument("--load-path", "--load_path", dest="load_path", default=None,
                      help="checkpoint of mode=pretrain with an I2P-MAE config; its stored cfg builds the model")
    mask.add_argument("--cfg", default=None, help="an I2P-MAE YAML (default: the checkpoint's config); "
                                                  "without --load-path the model is randomly initialised")
    mask.add_argument("--clouds", nargs="+", required=True, help="one object per file: .npy (N, 3+) or ModelNet .txt")
    mask.add_argument("--num-points", type=int, default=None,
                      help="points drawn per object (default: the config's dataset.common.num_points, else 2048)")
    mask.add_argument("--seed", type=int, default=0, help="seed of the point draw and both masks")
    mask.add_argument("--out", required=True, help="output PNG")
    mask.add_argument("--dpi", type=int, default=100, help="dots per inch (each panel is 2.6 inches square)")
    mask.add_argument("overrides", nargs="*", help="key=value config overrides")
    self_train = commands.add_parser("selftrain", help="Cross-MoST self-training curves of a run's history.json")
    self_train.add_argument("--run", required=True, help="the run folder, log/<task>/<exp>-<time>/")
    self_train.add_argument("--out", default=None, help="output PNG (default: <run>/self_training.png)")
    self_train.add_argument("--dpi", type=int, default=100, help="dots per inch (the PNG is 12.6 x 6 inches)")
    return parser


def _load_model_state(model, state, path: str) -> None:
    """Load ``state`` into ``model``; a mismatch is one sentence saying to pass the run's config.

    Args:
        model: the model built from ``--cfg``.
        state: the checkpoint's ``model`` state dict.
        path: the checkpoint, for the message.
    """
    import torch

    from plugin.errors import ConfigError

    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and not (torch.is_tensor(state[k])
                                                        and state[k].shape == expected[k].shape)]
    if missing or unexpected or wrong:
        raise ConfigError(f"The model of --cfg does not fit '{path}' ({len(missing)} tensors missing, "
                          f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. "
                          f"{(missing or unexpected or wrong)[0]}): pass the config and overrides the run used "
                          f"(its cfg.yaml works as --cfg).")
    model.load_state_dict(state)


def correspondence(args: argparse.Namespace) -> str:
    """Draw the correspondence map of ``args``; returns a one-line summary."""
    from plugin.engine import builders, load_config
    from plugin.io import writing
    from plugin.engine.batch import prepare_batch
    from plugin.engine.run_folder import load_checkpoint
    from plugin.errors import ConfigError, WeightsNotFoundError
    from plugin.vis import correspondence_maps as maps

    cfg = load_config(args.cfg, args.overrides)
    obj = maps.load_rendered_object(args.object, args.view)
    state = load_checkpoint(args.load_path, "--load_path")
    if not isinstance(state.get("model"), dict):
        raise WeightsNotFoundError(f"'{args.load_path}' holds no 'model' state: set --load_path to a "
                                   f"ckpt_best.pth or ckpt_latest.pth of mode=pretrain.")
    model = builders.build_model(cfg)
    if not hasattr(model, "embed"):
        raise ConfigError(f"--cfg builds {type(model).__name__}, which has no point-picture embeddings: pass a "
                          f"Pic@Point config such as cfgs/shapenet/pic_at_point-dgcnn.yaml.")
    _load_model_state(model, state["model"], args.load_path)
    device = builders.select_device(cfg)
    model.to(device).eval()
    common = (cfg.get("dataset") or {}).get("common") or {}
    data = maps.model_input(obj, common.get("num_points"), bool(common.get("use_normals", False)),
                            common.get("sampling", "random"))
    encoder_args = cfg.model.get("encoder_args") or {}
    data = prepare_batch(data, device, int(encoder_args.get("in_channels", 3)), feature_keys=cfg.get("feature_keys"))
    result = maps.correspondence(model, data, args.point)
    with writing(args.out, "--out"):
        maps.draw_correspondence(obj.image, result, args.out, args.view, args.dpi)
    size = result.grid_size
    best = int(result.similarity.argmax())
    return (f"region {result.region}: positive cell {divmod(result.cell, size)}, most similar cell "
            f"{divmod(best, size)} of {size}x{size} -> {args.out}")


def features(args: argparse.Namespace) -> str:
    """Draw the feature embeddings of ``args``; returns a one-line summary."""
    from plugin.io import writing
    from plugin.vis import embedding_plots as plots

    names = plots.read_class_names(args.classes) if args.classes else None
    method = {"tsne": "t-SNE", "pca": "PCA"}[args.method]
    loaded = [(path, *plots.read_features(path)) for path in args.features]  # fail fast, before any t-SNE
    for path, _, labels in loaded:
        plots.check_class_names(labels, names, f"'{path}'")
    panels = []
    for path, feats, labels in loaded:
        folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
        title = f"{folder}/{os.path.basename(path)}\n{method} of {len(feats)} x {feats.shape[1]} features"
        panels.append((title, plots.embed_2d(feats, args.method, args.seed), labels))
    with writing(args.out, "--out"):
        plots.draw_embeddings(panels, args.out, names, args.dpi)
    return f"{len(panels)} panel(s) of {method} -> {args.out}"


def i2p_mask(args: argparse.Namespace) -> str:
    """Draw the I2P-MAE masking figure of ``args``; returns a one-line summary."""
    import numpy as np
    import torch
    from openpoints.utils import EasyConfig

    from plugin.engine import builders, load_config
    from plugin.engine.config import apply_overrides
    from plugin.engine.run_folder import load_checkpoint
    from plugin.errors import ConfigError, WeightsNotFoundError
    from plugin.io import writing
    from plugin.models.pretext.i2p_mae import I2PMAE
    from plugin.vis import masking_maps as maps

    if args.load_path is None and args.cfg is None:
        raise ConfigError("i2p-mask needs a model: pass --load-path (a pre-training checkpoint) or --cfg "
                          "(a random-init model, e.g. cfgs/shapenet/i2p_mae.yaml).")
    clouds = [maps.load_cloud(path) for path in args.clouds]  # fail fast, before building the model
    state = load_checkpoint(args.load_path, "--load-path") if args.load_path else None
    if state is not None and not isinstance(state.get("model"), dict):
        raise WeightsNotFoundError(f"'{args.load_path}' holds no 'model' state: set --load-path to a "
                                   f"ckpt_best.pth or ckpt_latest.pth of mode=pretrain.")
    if args.cfg is not None:
        cfg = load_config(args.cfg, args.overrides)
    elif isinstance(state.get("cfg"), dict):
        cfg = EasyConfig()
        cfg.update(state["cfg"])
        apply_overrides(cfg, args.overrides)
    else:
        raise ConfigError(f"'{args.load_path}' stores no config: pass the run's cfg.yaml as --cfg.")
    model = builders.build_model(cfg)
    if not isinstance(model, I2PMAE):
        raise ConfigError(f"The config builds {type(model).__name__}, not I2PMAE: pass an I2P-MAE pre-training "
                          f"checkpoint or config such as cfgs/shapenet/i2p_mae.yaml.")
    if state is not None:
        _load_model_state(model, state["model"], args.load_path)
    device = builders.select_device(cfg)
    model.to(device).eval()
    common = (cfg.get("dataset") or {}).get("common") or {}
    num_points = int(args.num_points or common.get("num_points") or 2048)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    rows = maps.masking_rows(model, [maps.prepare_cloud(c, num_points, rng) for c in clouds], device)
    with writing(args.out, "--out"):
        maps.draw_masking(rows, args.out, args.dpi)
    source = f"'{args.load_path}'" if state is not None else "a randomly initialised model"
    return f"{len(rows)} object(s) of {num_points} points, masked by {source} -> {args.out}"


def selftrain(args: argparse.Namespace) -> str:
    """Draw the Cross-MoST self-training curves of ``args.run``; returns a one-line summary."""
    from plugin.errors import DataNotFoundError
    from plugin.io import writing
    from plugin.vis import self_training_curves as curves

    if not os.path.isdir(args.run):
        raise DataNotFoundError(f"Run folder '{args.run}' does not exist: pass --run a run folder "
                                f"log/<task>/<exp>-<time>/ of Cross-MoST training.")
    history = curves.read_history(os.path.join(args.run, "history.json"))
    out = args.out or os.path.join(args.run, "self_training.png")
    with writing(out, "--out"):
        curves.plot_self_training(history, out, os.path.basename(os.path.abspath(args.run)), args.dpi)
    return f"{len(history)} epoch record(s) of '{args.run}' -> {out}"


COMMANDS = {"correspondence": correspondence, "features": features, "i2p-mask": i2p_mask, "selftrain": selftrain}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)

    from plugin.errors import UserError

    try:
        print(COMMANDS[args.command](args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
