"""Imagen-style cascaded text-to-image diffusion.

Library entry point: `from imagen import Imagen`. The diffusion core lives in `schedules`, `objective`,
`denoiser`, `guidance`, `thresholding` and `samplers`; the cascade in `stage` and `pipeline`.
"""

from typing import Any

__all__ = ["Imagen"]


def __getattr__(name: str) -> Any:
    # `Imagen` pulls in torch and the networks; import it on first use so `imagen.eval` etc. stay light
    if name == "Imagen":
        from .pipeline import Imagen

        return Imagen
    raise AttributeError(f"module 'imagen' has no attribute {name!r}")
