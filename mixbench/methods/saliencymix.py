"""SaliencyMix (Uddin et al., ICLR 2021): CutMix with the box centred on the source image's saliency peak.

Matches openmixup's `augments/saliencymix.py` and the official code (REFERENCE.md §4): λ ~ Beta(α, α) and one
permutation per batch; the saliency map of the source image `x[perm[0]]` comes from OpenCV's static
fine-grained detector fed the normalised float32 HWC array, quantised as `(sal * 255).astype(uint8)`; the box
is centred on its first maximum in row-major order, with CutMix's size (int(H·√(1-λ)), int(W·√(1-λ))),
half-extents `cut // 2`, clipped to the image; the same box is pasted from x[perm] into every sample, λ is
recomputed from the clipped area, and the labels are the hard pair (y, y[perm]).

Deliberate differences from the reference:
* Saliency back end: `backend="torch"` (default) is a batched port of the same detector that runs on the
  batch's device and reproduces OpenCV's output, including its reading of float input as raw bytes (see
  `_saliency.py`; peak agreement is tested against OpenCV at 28-224 px). `backend="opencv"` calls OpenCV itself
  (extra `saliency`) and is the reference.
* `mode="elem"` (not in the reference): each sample gets its own λ and its own box, centred on the saliency
  peak of its own source image x[perm[i]].
* `p`: the probability of mixing. The official code uses 0.5 (`salmix_prob`); openmixup always mixes, and so
  does the default here (p=1). A draw that does not mix has λ = 1, an empty box, and costs no saliency.
* The caller's tensor is never written to (the reference pastes in place), and every draw comes from the
  trial's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.methods._saliency import (
    fine_grained_saliency,
    opencv_fine_grained_saliency,
    require_cv2,
    saliency_peaks,
)
from mixbench.methods.base import BetaMixer, MixedBatch
from mixbench.methods.cutmix import box_area_lam, box_bounds, paste_boxes
from mixbench.methods.registry import register_method

BACKENDS = ("torch", "opencv")


@register_method
class SaliencyMix(BetaMixer):
    name = "saliencymix"
    version = 1
    paper_name = "SaliencyMix"
    display_order = 30
    cost_multiplier = 1.05
    cost_source = "one saliency map per batch (REFERENCE.md §4: ~12 ms per 32×224 px batch)"

    def __init__(
        self,
        alpha: float = 1.0,
        p: float = 1.0,
        mode: str = "batch",
        backend: str = "torch",
        label_smoothing: float = 0.0,
    ):
        super().__init__(alpha=alpha, p=p, mode=mode, label_smoothing=label_smoothing)
        if backend not in BACKENDS:
            raise ValueError(
                f"backend must be 'torch' (batched port, on the batch's device) or 'opencv' (the reference); "
                f"got {backend!r}"
            )
        self.backend = backend

    def check_input(self, image_size: tuple[int, int], backbone_name: str) -> None:
        height, width = image_size
        if height < 2 or width < 2:
            raise ValueError(
                f"SaliencyMix's fine-grained saliency needs images of at least 2×2 px; got {height}×{width}"
            )
        if self.backend == "opencv":
            try:
                require_cv2()
            except ImportError as err:
                raise ValueError(f"{err}; or use backend='torch' (no extra needed)") from err

    def saliency_maps(self, images: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, H, W) uint8 fine-grained saliency, from the configured back end."""
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"SaliencyMix's fine-grained saliency (OpenCV's) takes 1- or 3-channel images; got {images.shape[1]}"
            )
        if self.backend == "opencv":
            return opencv_fine_grained_saliency(images)
        return fine_grained_saliency(images)

    def mix(self, x: Tensor, y: Tensor, lam: Tensor, index: Tensor) -> MixedBatch:
        height, width = x.shape[-2:]
        index = index.to(x.device)
        if self.mode == "batch":
            # One box for the batch, on the saliency peak of the image pasted into sample 0 (as the reference).
            peak = torch.zeros(2, dtype=torch.long)
            if float(lam) < 1.0:
                peak = saliency_peaks(self.saliency_maps(x[index[:1]].detach()))[0].cpu()
        else:
            peak = torch.zeros((x.shape[0], 2), dtype=torch.long)
            mixing = (lam < 1.0).nonzero().flatten()
            if len(mixing):
                sources = index[mixing.to(x.device)]
                peak[mixing] = saliency_peaks(self.saliency_maps(x[sources].detach())).cpu()
        # box_bounds takes centres as fractions and maps u to pixel floor(u·size): the pixel's middle maps back.
        center = (peak.to(torch.float64) + 0.5) / torch.tensor([height, width], dtype=torch.float64)
        boxes = box_bounds(lam, center, height, width)
        mixed, mask = paste_boxes(x, index, boxes)
        return MixedBatch(
            x=mixed, y_a=y, y_b=y[index.to(y.device)], lam=box_area_lam(boxes, height, width), mask=mask
        )
