"""The settings an output folder was written with (its ``meta.json``), against those of a run resuming into it.

A tool that resumes into ``--out`` (``tools/render_views.py``, ``tools/import_ulip_shapenet.py``) records its
settings in ``<out>/meta.json``; a rerun with other settings would mix old and new objects, so it is refused
with one sentence naming the first setting that differs.
"""
import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional


def settings_conflict(out: Path, settings: Mapping[str, Any], options: Mapping[str, Optional[str]], made: str,
                      redo: str, prepare: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
                      ) -> Optional[str]:
    """One sentence naming the first setting of this run that differs from ``out/meta.json``'s, or None.

    None also when ``out`` has no ``meta.json`` (nothing written there yet). A setting ``meta.json`` does not
    record is not compared; a None value is shown as ``all`` (e.g. every point kept).

    Args:
        out: the output folder.
        settings: this run's value of every key of ``options``.
        options: ``meta.json`` key -> the option that sets it, in the order to compare; None for a key that names
            the dataset itself (another value is another dataset: the sentence asks for another ``--out``).
        made: what the folder holds, e.g. ``"views rendered"`` (``'<out>' holds views rendered with ...``).
        redo: how to write the folder anew, e.g. ``"--overwrite to re-render every object"``.
        prepare: applied to the ``meta.json`` dict before comparing (older formats, defaults of absent keys).
    """
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        return (f"'{meta_path}' is unreadable ({type(err).__name__}), so the settings of the {made} there are "
                f"unknown: pass {redo}, or another --out.")
    if not isinstance(meta, dict):
        return f"'{meta_path}' holds no settings: pass {redo}, or another --out."
    meta = prepare(meta) if prepare else meta
    for key, option in options.items():
        if key not in meta or meta[key] == settings[key]:
            continue
        if option is None:
            return f"'{out}' holds another dataset ({meta[key]!r}, not {settings[key]!r}): pass another --out."
        old, new = ("all" if value is None else value for value in (meta[key], settings[key]))
        return (f"'{out}' holds {made} with {option} {old}, not {new} (its meta.json), and the two would mix: "
                f"pass {option} {old} to resume, another --out, or {redo}.")
    return None
