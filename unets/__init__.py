"""Network architectures only (no diffusion): the Efficient U-Net and its layers."""
