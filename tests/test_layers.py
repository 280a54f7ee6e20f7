"""Every import in ``plugin/`` points down the layers, so each package can be read and tested without those above.

The layers, bottom to top (a module may import its own package and any package below it, never one above):

1. ``errors``   the user-error classes;
2. ``host``     the OpenPoints adaptation (op binding, upstream defects): nothing else of the plugin;
3. ``io``       atomic writes, the fingerprinted on-disk cache, safe checkpoint reading;
4. ``ops``      the Python API of the native point ops;
5. ``render``   cameras, view sets, projection, mapping, renderers;
6. ``clip``     open_clip loading, prompts, text features, zero-shot logits (Eq. 11), the CLIP-sized renderer;
7. ``losses``   the contrastive and balanced losses;
8. ``models``   pretext models, heads, feature taps, image backbones;
9. ``datasets`` the registered datasets, the overrides of upstream ones included;
10. ``eval``    SVM probe, pooling, feature cache, metrics (OA, mAcc, top-k), K-per-class and held-out splits;
11. ``vis``     correspondence maps and embedding plots (they embed with models and read datasets);
12. ``engine``  the runners (modes) and what they share: config, data loaders, builders, run folders.

``plugin/__init__.py`` is above them all: it installs the host patches and imports the registering packages.
Imports inside functions count too: a lazy import up the layers is still a cycle between packages.
"""
import ast
from pathlib import Path
from typing import Iterator, List, Tuple

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
LAYERS = ("errors", "host", "io", "ops", "render", "clip", "losses", "models", "datasets", "eval", "vis", "engine")


def _module_name(path: Path, root: Path = PLUGIN) -> str:
    """The dotted name of the module in ``path``, a file under the package folder ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, root: Path = PLUGIN) -> Iterator[Tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` that names a module of the plugin."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "plugin")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "plugin":
                continue
            if module == "plugin":  # ``from .. import clip``: each name is a package
                yield from ((node.lineno, f"plugin.{alias.name}") for alias in node.names)
            else:
                yield node.lineno, module


def _layer(module: str) -> str:
    """The layer of a module: the package (or top-level module) right under ``plugin``."""
    return module.split(".")[1]


def _modules() -> List[Path]:
    return sorted(p for p in PLUGIN.rglob("*.py") if p != PLUGIN / "__init__.py")


def test_every_package_has_a_layer():
    found = {_layer(_module_name(path)) for path in _modules()}
    assert found <= set(LAYERS), f"place {sorted(found - set(LAYERS))} in LAYERS (and in this module's docstring)"


def test_every_import_points_down():
    upward = []
    for path in _modules():
        own = LAYERS.index(_layer(_module_name(path)))
        for line, module in _imported_modules(path):
            if LAYERS.index(_layer(module)) > own:
                upward.append(f"{path.relative_to(PLUGIN.parent)}:{line} imports {module}")
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_the_check_sees_relative_lazy_and_absolute_imports(tmp_path):
    """The parser itself: every spelling of an import of the plugin is found, none of the others."""
    root = tmp_path / "plugin"
    (root / "eval").mkdir(parents=True)
    module = root / "eval" / "probe.py"
    module.write_text("from ..engine import data\n"
                      "import numpy\n"
                      "def f():\n    from plugin.vis import correspondence_maps\n"
                      "import plugin.engine.runner\n"
                      "from .. import models, engine\n"
                      "from .metrics import accuracy\n")
    found = sorted(_imported_modules(module, root), key=lambda item: item[0])
    assert [name for _, name in found] == ["plugin.engine", "plugin.vis", "plugin.engine.runner", "plugin.models",
                                           "plugin.engine", "plugin.eval.metrics"]
