"""Metrics beyond top-1, each in its own module; `mixbench.evaluate` runs them on a trained trial.

calibration    ECE (15 / 10 bins), MCE, NLL, Brier, temperature scaling, reliability bins (torchmetrics)
corruptions    the 15 Hendrycks & Dietterich corruptions at CIFAR-10-C / Tiny-ImageNet-C / ImageNet-C parameters
corrupted_sets the corrupted val splits, cached on disk by content hash
occlusion      random patch drop (openmixup's occlusion robustness)
fgsm           the fast gradient sign attack in pixel space
pixels         uint8 images <-> [0, 1] pixels <-> the normalised input a model reads
"""
