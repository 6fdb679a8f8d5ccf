"""A method whose loss is NaN: tests that such a trial is recorded as failed and the suite goes on."""

import torch

from mixbench.methods.base import Method, StepOutput


class NaNLoss(Method):
    name = "nan_loss"

    def training_loss(self, backbone, x, y, gen):
        return StepOutput(loss=backbone(x).sum() * torch.tensor(float("nan")))
