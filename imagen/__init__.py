"""Imagen-style cascaded text-to-image diffusion.

Library entry point: `from imagen import Imagen`. The diffusion core lives in `schedules`, `objective`,
`denoiser`, `guidance`, `thresholding` and `samplers`.
"""
