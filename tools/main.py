"""Run any mode of the plugin: ``python tools/main.py --cfg cfgs/<task>/<exp>.yaml [key=value ...]``.

``mode`` (in the YAML or as ``mode=...``) picks a runner from ``plugin.engine.RUNNERS``. Errors the
user can fix are printed as one sentence (exit status 2) instead of a traceback, and the run folder
such an error ended before any checkpoint or metrics is removed.

Several processes: ``torchrun --nproc_per_node=N tools/main.py --cfg ...`` trains with DDP (modes
``train``, ``finetune``, ``pretrain`` and their ``resume``); ``batch_size`` is per process.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="experiment YAML, e.g. cfgs/modelnet40/pointnext-s.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=5 mode=test")
    args = parser.parse_args(argv)

    from plugin.engine import load_config, runner_for
    from plugin.engine.builders import select_device
    from plugin.engine.distributed import close_distributed, init_distributed
    from plugin.engine.run_folder import discarding_fresh_folders
    from plugin.errors import UserError
    from plugin.ops import PointOpsInputError

    try:
        cfg = load_config(args.cfg, args.overrides)
        init_distributed(select_device(cfg).type)  # joins the processes of torchrun; nothing for one process
        with discarding_fresh_folders((UserError, PointOpsInputError)):
            runner_for(cfg.mode)(cfg).run()
    except (UserError, PointOpsInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is in ckpt_latest.pth; continue with mode=resume.",
              file=sys.stderr)
        return 130
    finally:
        close_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
