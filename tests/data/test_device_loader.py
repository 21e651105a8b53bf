"""DeviceLoader: CIFAR batches cut, augmented and normalised on the device (tested on the CPU)."""

import pytest
import torch

from course_utils.data import cifar
from course_utils.data.device_loader import DeviceLoader


def _images(n=64, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)


def test_eval_batches_are_the_normalised_images_in_order():
    images, labels = _images(10), torch.arange(10)
    loader = DeviceLoader(images, labels, batch_size=4, device="cpu", mean=(0.5,) * 3, std=(0.25,) * 3,
                          train=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3  # the last partial batch is kept for evaluation
    x = torch.cat([b for b, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    expected = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)


def test_train_batches_are_shifted_or_flipped_copies_with_their_labels():
    images = _images(32)
    labels = torch.arange(32)
    loader = DeviceLoader(images, labels, batch_size=8, device="cpu", mean=(0,) * 3, std=(1,) * 3,
                          train=True, seed=1)
    assert len(loader) == 4
    chw = images.permute(0, 3, 1, 2).float() / 255
    padded = torch.nn.functional.pad(chw, (4, 4, 4, 4))
    shifted = 0
    for x, y in loader:
        assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
        for image, label in zip(x, y):  # each crop must be some window of ITS OWN padded image
            candidates = [padded[label, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
            found = [c for c in candidates if torch.equal(c, image) or torch.equal(c.flip(-1), image)]
            assert found, "image does not match its label's image"
            shifted += not torch.equal(image, chw[label]) and not torch.equal(image, chw[label].flip(-1))
    assert shifted > 0, "no random crop happened"


def test_train_order_and_augmentation_repeat_with_the_seed():
    images, labels = _images(16), torch.arange(16)
    first = [x for x, _ in DeviceLoader(images, labels, batch_size=8, device="cpu", mean=(0,) * 3,
                                        std=(1,) * 3, train=True, seed=3)]
    again = [x for x, _ in DeviceLoader(images, labels, batch_size=8, device="cpu", mean=(0,) * 3,
                                        std=(1,) * 3, train=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_wrong_input_is_refused_clearly():
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(torch.zeros(4, 32, 32, 3), torch.zeros(4), batch_size=2, device="cpu",
                     mean=(0,) * 3, std=(1,) * 3, train=True)


def test_device_loaders_read_the_synthetic_set(synthetic_cifar_root, ci_profile):
    train, test = cifar.datasets(ci_profile, root=synthetic_cifar_root)
    train_loader, test_loader = cifar.device_loaders(train, test, ci_profile, "cpu")
    images, labels = next(iter(test_loader))
    reference_images, reference_labels = next(iter(cifar.make_loaders(train, test, ci_profile)[1]))
    assert torch.allclose(images, reference_images, atol=1e-5)  # same pixels as the torchvision path
    assert torch.equal(labels, reference_labels)
    assert len(train_loader) == len(train) // ci_profile.batch_size


def test_the_recorded_transforms_do_not_depend_on_the_batch_per_process():
    """1 process at batch 64 and 2 at 32 each are one run (the plan records the effective batch):
    the loader's repr, recorded as the data's transforms, must not tell them apart."""
    images, labels = _images(64), torch.arange(64) % 10
    whole, half = (repr(DeviceLoader(images, labels, batch_size=b, device="cpu", mean=(0,) * 3, std=(1,) * 3, train=True))
                   for b in (64, 32))
    assert whole == half
    assert "random crop" in whole
