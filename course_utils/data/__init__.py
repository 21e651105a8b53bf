"""Datasets: CIFAR-10, Pascal VOC 2012, image folders, and synthetic stand-ins."""
