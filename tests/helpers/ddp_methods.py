"""Methods for the DDP tests (tests/test_ddp.py), importable by the trial processes as ddp_methods:NAME."""

from torch.nn import functional as F

from mixbench.methods.base import Method, StepOutput


class AroundTheWrapper(Method):
    """Trains the bare backbone behind the DDP wrapper and lets the engine run the backward: nothing averages
    its gradients, so the processes' weights drift apart; the engine must notice after the epoch."""

    name = "around_the_wrapper"

    def training_loss(self, backbone, x, y, gen):
        bare = getattr(backbone, "module", backbone)
        return StepOutput(loss=F.cross_entropy(bare(x).float(), y))
