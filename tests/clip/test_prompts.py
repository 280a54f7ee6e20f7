"""Prompt templates: names, class-name formatting, JSON ensembles in the ULIP file format."""
import json
from pathlib import Path

import pytest

from plugin.clip import TEMPLATES, class_text, format_prompts, resolve_templates
from plugin.errors import ConfigError, DataNotFoundError

ULIP_TEMPLATES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "text" / "ulip_templates.json"


def test_class_names_lose_underscores() -> None:
    assert class_text("night_stand") == "night stand"
    assert format_prompts("night_stand", resolve_templates("clip2point")) == ["image of a night stand."]
    assert format_prompts("flower_pot", resolve_templates("point_cloud")) == ["a point cloud of a flower pot."]


def test_every_named_set_has_one_slot_per_template() -> None:
    assert TEMPLATES["clip2point"] == ["image of a {}."]
    for name in TEMPLATES:
        assert all(t.count("{}") == 1 for t in resolve_templates(name)), name


def test_lists_and_bad_specs() -> None:
    assert resolve_templates(["a {}.", "the {}."]) == ["a {}.", "the {}."]
    assert resolve_templates("a sketch of a {}.") == ["a sketch of a {}."]
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_templates(["no slot here"])
    with pytest.raises(ConfigError, match="Unknown template set 'nope'"):
        resolve_templates("nope")
    with pytest.raises(DataNotFoundError, match="zeroshot.templates"):
        resolve_templates("missing/templates.json")


def test_ulip_format_json(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"modelnet40_64": ["a point cloud model of {}.", "a photo of a {}."],
                                "shapenet_64": ["a {}."]}))
    assert resolve_templates(f"{path}:modelnet40_64") == ["a point cloud model of {}.", "a photo of a {}."]
    with pytest.raises(ConfigError, match="modelnet40_64, shapenet_64"):
        resolve_templates(str(path))
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"only": ["a {}."]}))
    assert resolve_templates(str(single)) == ["a {}."]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["x {}.", "y {}."]))
    assert resolve_templates(str(listed)) == ["x {}.", "y {}."]


def test_real_ulip_templates_file() -> None:
    if not ULIP_TEMPLATES.is_file():
        pytest.skip(f"{ULIP_TEMPLATES} not found (../shared/data is only present beside the project)")
    templates = resolve_templates(f"{ULIP_TEMPLATES}:modelnet40_64")
    assert len(templates) == 64 and templates[0] == "a point cloud model of {}."


def test_json_list_reads_a_list_or_a_named_entry_and_names_the_key_when_it_cannot(tmp_path):
    from plugin.clip.prompts import json_list
    from plugin.errors import BadInputError, ConfigError, DataNotFoundError

    (tmp_path / "one.json").write_text('["a {}."]')
    (tmp_path / "many.json").write_text('{"x": ["b {}."], "y": ["c {}."]}')
    (tmp_path / "bad.json").write_text('{"x": [')
    assert json_list(str(tmp_path / "one.json"), "k", "File", "a file") == ["a {}."]
    assert json_list(f"{tmp_path / 'many.json'}:y", "k", "File", "a file") == ["c {}."]
    with pytest.raises(DataNotFoundError, match="set k to a file"):
        json_list(str(tmp_path / "none.json"), "k", "File", "a file")
    with pytest.raises(ConfigError, match="NAME one of x, y"):
        json_list(str(tmp_path / "many.json"), "k", "File", "a file")
    with pytest.raises(ConfigError, match="holds one list"):
        json_list(f"{tmp_path / 'one.json'}:x", "k", "File", "a file")
    with pytest.raises(BadInputError, match="not readable JSON"):
        json_list(str(tmp_path / "bad.json"), "k", "File", "a file")
