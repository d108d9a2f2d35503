"""Augmentation specs: each builds a function (x, y) -> (x, y) on whole training batches, on the device."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field

from .base import PositiveFloat, PositiveInt, Probability, StrictModel


def shift_batch(x, max_shift: int, axes: tuple[int, ...]):
    """Shift every sample by its own random offset in [-max_shift, max_shift] along each axis, zero-filled."""
    import torch
    import torch.nn.functional as F

    for axis in axes:
        n, size = x.shape[0], x.shape[axis]
        offsets = torch.randint(-max_shift, max_shift + 1, (n,), device=x.device)
        moved = x.movedim(axis, -1)
        padded = F.pad(moved, (max_shift, max_shift))
        index = torch.arange(size, device=x.device) + max_shift - offsets.view(n, *[1] * (moved.dim() - 1))
        x = padded.gather(-1, index.expand_as(moved)).movedim(-1, axis)
    return x


class _Augmentation(StrictModel):
    needs_image: ClassVar[bool] = False  # needs (C, H, W) samples

    def build(self, task: str, num_outputs: int):
        """The batch transform (x, y) -> (x, y)."""
        return lambda x, y: (self.apply(x), y)


class GaussianNoiseSpec(_Augmentation):
    """Adds N(0, std²) noise to every (normalized) input value."""

    type: Literal["gaussian_noise"] = Field(description="Selects additive Gaussian noise.")
    std: PositiveFloat = Field(description="Standard deviation of the noise, in normalized input units.")

    def apply(self, x):
        import torch

        return x + self.std * torch.randn_like(x)


class RandomShiftSpec(_Augmentation):
    """Shifts each sample by up to max_shift positions along its last axis (last two for images)."""

    type: Literal["random_shift"] = Field(description="Selects random shifts along the last axis (the last two for images).")
    max_shift: PositiveInt = Field(description="Largest shift in positions (pixels for images); each sample draws its own offsets, and vacated positions become 0 in normalized units.")

    def apply(self, x):
        axes = (-2, -1) if x.dim() == 4 else (-1,)
        return shift_batch(x, self.max_shift, axes)


class HorizontalFlipSpec(_Augmentation):
    """Mirrors each image left-right with probability p."""

    type: Literal["horizontal_flip"] = Field(description="Selects random left-right flips of (C, H, W) images.")
    p: Probability = Field(0.5, description="Probability of flipping each image.")
    needs_image: ClassVar[bool] = True

    def apply(self, x):
        import torch

        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class RandomCropSpec(_Augmentation):
    """Pads each image by `padding` pixels and crops a random window of the original size."""

    type: Literal["random_crop"] = Field(description="Selects random crops of (C, H, W) images.")
    padding: PositiveInt = Field(description="Pixels of zero padding on each side; the crop window moves up to this far from the center.")
    needs_image: ClassVar[bool] = True

    def apply(self, x):
        return shift_batch(x, self.padding, (-2, -1))


class RandomRotationSpec(_Augmentation):
    """Rotates each image by a random angle in [-degrees, degrees]."""

    type: Literal["random_rotation"] = Field(description="Selects random rotations of (C, H, W) images.")
    degrees: float = Field(gt=0, le=180, description="Largest rotation angle in degrees; each image draws its own in [-degrees, degrees], corners filled with 0.")
    needs_image: ClassVar[bool] = True

    def apply(self, x):
        import math

        import torch
        import torch.nn.functional as F

        angle = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * math.radians(self.degrees)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


class MixupSpec(_Augmentation):
    """Trains on convex mixtures of sample pairs and of their targets (λ ~ Beta(alpha, alpha))."""

    type: Literal["mixup"] = Field(description="Selects mixup of sample pairs and their targets.")
    alpha: PositiveFloat = Field(0.2, description="Parameter of the Beta(alpha, alpha) distribution of the mixing weight, drawn once per batch; small values keep mixtures close to one sample.")

    def build(self, task: str, num_outputs: int):
        import torch
        import torch.nn.functional as F

        beta = torch.distributions.Beta(self.alpha, self.alpha)

        def mix(x, y):
            lam = float(beta.sample())
            perm = torch.randperm(x.shape[0], device=x.device)
            if task == "classification" and y.dim() == 1:  # class indices become probabilities
                y = F.one_hot(y, num_outputs).to(x.dtype)
            return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]

        return mix


AugmentationSpec = Annotated[
    Union[GaussianNoiseSpec, RandomShiftSpec, HorizontalFlipSpec, RandomCropSpec, RandomRotationSpec, MixupSpec],
    Field(discriminator="type"),
]
