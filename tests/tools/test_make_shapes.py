"""``tools/make_shapes.py``: its description names every class of the procedural dataset."""
import re

from plugin.datasets.procedural_shapes import CLASSES

from ..conftest import load_tool


def test_description_counts_and_names_every_class():
    tool = load_tool("make_shapes")
    text = " ".join(tool.__doc__.split())
    assert f"{len(CLASSES)} classes of parametric objects" in text
    listed = re.search(r"objects \(([^)]*)\)", text).group(1).split(", ")
    assert listed == CLASSES
