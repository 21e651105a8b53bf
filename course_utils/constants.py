"""The numbers and names every part of the course shares, each written once.

A leaf module: it imports nothing from the course, so datasets, metrics, plots and checks can all
read from here without importing each other.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = 255  # VOC marks object borders and "difficult" pixels with 255: never scored

# ImageNet statistics: what pretrained encoders expect, and the usual default for photos of any kind.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50,000 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the same

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC_NUM_CLASSES = len(VOC_CLASSES)  # 21


def _voc_colormap(n: int = 256) -> torch.Tensor:
    """The standard VOC colour map (n, 3) uint8: bits of the index spread over R, G, B."""
    index = torch.arange(n)
    cmap = torch.zeros(n, 3, dtype=torch.int64)
    for j in range(8):  # 8 rounds of 3 bits: bit 3j+c goes to bit 7-j of channel c
        for channel in range(3):
            cmap[:, channel] |= ((index >> (3 * j + channel)) & 1) << (7 - j)
    return cmap.to(torch.uint8)


VOC_PALETTE = _voc_colormap()  # (256, 3): 0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192)
