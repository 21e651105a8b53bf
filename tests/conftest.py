"""Shared fixtures: the synthetic datasets, written ONCE per test session into temporary folders.

Each fixture returns the root folder to pass as ``root=`` to the loaders, e.g.
``cifar.loaders(ci_profile, root=synthetic_cifar_root)`` or
``voc.VOCSegmentationV2(synthetic_voc_root, image_set="val")``. Treat them as read-only: a test
that needs to damage a file copies the tree into its own ``tmp_path`` first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course_utils import runtime
from course_utils.data import synthetic


@pytest.fixture(scope="session")
def synthetic_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root holding ``cifar-10-batches-py/`` (512 train / 256 test images, seed 0)."""
    root = tmp_path_factory.mktemp("synthetic_cifar")
    synthetic.write_cifar10(root, num_train=512, num_test=256, seed=0)
    return root


@pytest.fixture(scope="session")
def synthetic_voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root holding ``VOCdevkit/VOC2012/`` (48 train / 24 val images, seed 0)."""
    root = tmp_path_factory.mktemp("synthetic_voc")
    synthetic.write_voc2012(root, num_train=48, num_val=24, seed=0)
    return root


@pytest.fixture
def ci_profile() -> runtime.Profile:
    """The built-in ``ci`` profile (synthetic data, batch 16, 32 px crops, no workers)."""
    return runtime.default_profile("ci")
