"""Network architectures only (no diffusion): the Efficient U-Net and its layers."""

from .efficient_unet import EfficientUNet

__all__ = ["EfficientUNet"]
