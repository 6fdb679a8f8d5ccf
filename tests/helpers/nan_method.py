"""A method whose loss is NaN: tests that such a trial is recorded as failed and the suite goes on."""

import torch

from mixbench.methods.base import Method, StepOutput


class NaNLoss(Method):
    name = "nan_loss"

    def training_loss(self, backbone, x, y, gen):
        return StepOutput(loss=backbone(x).sum() * torch.tensor(float("nan")))


class LateNaN(Method):
    """Finite losses for three steps, then NaN: the failure must name step 3, whenever it is noticed."""

    name = "late_nan"

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.calls = 0

    def training_loss(self, backbone, x, y, gen):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(backbone(x), y)
        return StepOutput(loss=loss * torch.tensor(float("nan")) if self.calls > 3 else loss)
