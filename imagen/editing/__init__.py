"""Image editing and exploration on top of the cascade and its samplers: image-to-image variations,
inpainting and outpainting (`image_edit`), interpolation between prompts and seeds (`interpolation`), and
prompt differences (`prompt_diff`). Each takes a pipe (`imagen.Imagen`); `Imagen` has each as a method.

    from imagen.editing import img2img, inpaint, interpolate, outpaint, text_diff
"""

from typing import Any

_EXPORTS = {"ImageEdit": "image_edit", "img2img": "image_edit", "inpaint": "image_edit", "outpaint": "image_edit",
            "interpolate": "interpolation", "text_diff": "prompt_diff"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    # imported on first use, so that the CLI's --help stays light
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'imagen.editing' has no attribute {name!r}")
