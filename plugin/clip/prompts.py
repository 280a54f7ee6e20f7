"""Prompt templates for CLIP text classifiers, by name or from a JSON file.

A template holds one ``{}`` that receives the class name (underscores become spaces:
``night_stand`` -> ``a point cloud of a night stand.``). An ensemble is a list of templates whose
text embeddings are averaged (:func:`plugin.clip.text_features.text_classifier`).

A template spec (``zeroshot.templates``) is one of

- a name of :data:`TEMPLATES`, e.g. ``clip2point``;
- a list of template strings;
- a JSON file: a list of templates, or a mapping of ensemble names to lists (the ULIP templates file
  format); pick an entry with ``path.json:name`` (optional when the file holds one entry).
"""
import json
import os
from typing import Any, Dict, List, Sequence, Union

from ..errors import BadInputError, ConfigError, DataNotFoundError

TEMPLATES: Dict[str, List[str]] = {
    "clip2point": ["image of a {}."],  # CLIP2Point's zero-shot prompt
    "point_cloud": ["a point cloud of a {}."],
    "pointclip": ["point cloud depth map of a {}."],  # PointCLIP's prompt
    "photo": ["a photo of a {}."],
    "depth_ensemble": ["image of a {}.", "a point cloud of a {}.", "point cloud depth map of a {}.",
                       "a depth map of a {}.", "a rendering of a {}.", "a 3D model of a {}."],
}
TemplateSpec = Union[str, Sequence[str]]


def class_text(name: str) -> str:
    """The class name as it goes into a prompt: underscores replaced by spaces, stripped.

    Args:
        name: a dataset class name, e.g. ``night_stand``.
    """
    return name.replace("_", " ").strip()


def check_templates(templates: Sequence[str], origin: str) -> List[str]:
    """``templates`` as a list, each with exactly one ``{}``; raise :class:`ConfigError` otherwise.

    Args:
        templates: the template strings.
        origin: where they came from, for the error message.
    """
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise ConfigError(f"{origin} holds no list of templates: give a non-empty list such as "
                          f"['a point cloud of a {{}}.'].")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ConfigError(f"Template {template!r} in {origin} must be a string with exactly one {{}} for the "
                              f"class name, e.g. 'a point cloud of a {{}}.'.")
    return list(templates)


def json_list(spec: str, key: str, what: str, fix: str) -> Any:
    """The list in a JSON file spec ``path.json`` (a list, or a mapping with one entry) or ``path.json:entry``.

    Args:
        spec: ``path.json`` or ``path.json:entry``.
        key: the config key of ``spec``, for the messages.
        what: what the file holds, for the messages (``Template file``, ``Class-name file``).
        fix: the end of the sentence for a missing file, after "set {key} to".

    Raises:
        DataNotFoundError: no such file. BadInputError: not JSON. ConfigError: no such entry, or an entry named for a
            file that holds one list.
    """
    path, _, entry = spec.partition(".json")
    path, entry = path + ".json", entry.lstrip(":")
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{what} '{path}' not found: set {key} to {fix}.")
    try:
        with open(path) as f:
            content = json.load(f)
    except (OSError, ValueError) as err:
        raise BadInputError(f"{what} '{path}' is not readable JSON ({err}): fix it or set {key} to another "
                            f"file.") from None
    if isinstance(content, dict):
        if not entry and len(content) == 1:
            entry = next(iter(content))
        if entry not in content:
            raise ConfigError(f"Pick a list of '{path}' with {key}={path}:NAME, NAME one of {', '.join(content)}.")
        return content[entry]
    if entry:
        raise ConfigError(f"'{path}' holds one list, not named entries: set {key}={path}.")
    return content


def resolve_templates(spec: TemplateSpec, key: str = "zeroshot.templates") -> List[str]:
    """The template list of ``spec``: a name of :data:`TEMPLATES`, a list of templates, or a JSON file.

    Args:
        spec: see the module docstring.
        key: the config key of ``spec``, for error messages.
    """
    if isinstance(spec, str):
        if spec in TEMPLATES:
            return list(TEMPLATES[spec])
        if ".json" in spec:
            fix = f"an existing JSON file or to one of {', '.join(TEMPLATES)}"
            return check_templates(json_list(spec, key, "Template file", fix), spec)
        if "{}" in spec:
            return check_templates([spec], key)
        raise ConfigError(f"Unknown template set '{spec}' in {key}: use one of {', '.join(TEMPLATES)}, a list of "
                          f"templates with {{}}, or a JSON file of templates.")
    return check_templates(spec, key)


def format_prompts(class_name: str, templates: Sequence[str]) -> List[str]:
    """The prompts of one class, one per template.

    Args:
        class_name: a dataset class name (underscores allowed).
        templates: templates with one ``{}`` each.
    """
    return [template.format(class_text(class_name)) for template in templates]
