"""make_loaders: a training set smaller than one batch gets the fix that can actually help."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from course_utils import runtime
from course_utils.data import loading


def _images(n: int) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 3, 4, 4), torch.zeros(n, dtype=torch.int64))


def _profile(batch_size: int, train_subset: int | None) -> runtime.Profile:
    return dataclasses.replace(runtime.default_profile("ci"), batch_size=batch_size, train_subset=train_subset)


def test_a_whole_set_smaller_than_a_batch_is_not_told_to_raise_train_subset():
    profile = _profile(batch_size=16, train_subset=None)
    with pytest.raises(ValueError, match="only 10 images") as error:
        loading.make_loaders(_images(10), _images(4), profile)
    message = str(error.value)
    assert "lower batch_size" in message and "add images" in message
    assert "train_subset" not in message  # raising it cannot help: there are no more images


def test_a_small_subset_is_told_to_raise_train_subset():
    profile = _profile(batch_size=16, train_subset=8)
    train = loading.subset(_images(100), profile.train_subset)
    with pytest.raises(ValueError, match="raise train_subset") as error:
        loading.make_loaders(train, _images(4), profile)
    assert "of 100" in str(error.value)


def test_a_subset_of_a_set_smaller_than_a_batch_is_told_to_lower_batch_size():
    profile = _profile(batch_size=16, train_subset=8)
    train = loading.subset(_images(12), profile.train_subset)  # even all 12 would not fill a batch
    with pytest.raises(ValueError, match="lower batch_size") as error:
        loading.make_loaders(train, _images(4), profile)
    assert "raise train_subset" not in str(error.value)


def test_an_empty_training_set_says_it_is_empty():
    with pytest.raises(ValueError, match="empty") as error:
        loading.make_loaders(_images(0), _images(4), _profile(batch_size=16, train_subset=None))
    assert "batch_size" not in str(error.value)
