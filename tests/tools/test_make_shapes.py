"""``tools/make_shapes.py``: its description names every class of the procedural dataset."""
import importlib.util
import re
from pathlib import Path

from plugin.datasets.procedural_shapes import CLASSES

REPO = Path(__file__).resolve().parents[2]


def test_description_counts_and_names_every_class():
    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "tools" / "make_shapes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = " ".join(tool.__doc__.split())
    assert f"{len(CLASSES)} classes of parametric objects" in text
    listed = re.search(r"objects \(([^)]*)\)", text).group(1).split(", ")
    assert listed == CLASSES
