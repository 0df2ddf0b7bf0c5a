"""The README's editing and upscaling pictures (docs/editing-*.png, docs/editing-interpolation.gif,
docs/upscale.png), from a trained shapes model:

    python scripts/editing_pictures.py --model shapes --out docs

Inputs are rendered shapes scenes (imagen.shapes), so the pictures need nothing but the model. Every picture
is what the library API returns (the same as the imagen-sample flags in the README), laid out with
imagen.grid.labelled_grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from imagen import Imagen
from imagen.grid import labelled_grid
from imagen.io import atomic_write
from imagen.shapes import object_box, parse_caption, render

CIRCLE = "a large red circle at the center on a blue background"


def save(image: Image.Image, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    atomic_write(path, buffer.getvalue())
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model directory (save_pretrained / imagen-train)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = Imagen.from_pretrained(args.model, device=args.device)
    size = list(pipe.stages.values())[-1].resolution
    scene = render(parse_caption(CIRCLE), size)
    cell = max(128, min(size, 512))  # full-size 1024 px cells make multi-megabyte strips: half size
    run = {"progress": False}

    variations = pipe.img2img(CIRCLE, scene, strength=0.7, seed=0, num_images_per_prompt=4, **run).images
    save(labelled_grid([scene, *variations], ["input", *(f"strength 0.7, seed {i}" for i in range(4))],
                       cell=cell), args.out / "editing-variations.png")

    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    prompt = "a small yellow triangle at the center on a blue background"
    plain = pipe.inpaint(prompt, scene, mask, seed=0, num_images_per_prompt=3, **run).images
    repaint = pipe.inpaint(prompt, scene, mask, resample_steps=3, seed=0, num_images_per_prompt=3,
                           **run).images
    labels = ["input", *(f"seed {i}" for i in range(3)), "mask (white = regenerate)",
              *(f"RePaint U=3, seed {i}" for i in range(3))]
    save(labelled_grid([scene, *plain, mask.convert("RGB"), *repaint], labels, columns=4, cell=cell),
         args.out / "editing-inpaint.png")

    narrow = scene.crop((size // 4, 0, 3 * size // 4, size))
    wide = pipe.outpaint(CIRCLE, narrow, (size // 4, 0, size // 4, 0), seed=0, num_images_per_prompt=3,
                         **run).images
    padded = Image.new("RGB", (size, size), "white")
    padded.paste(narrow, (size // 4, 0))
    save(labelled_grid([padded, *wide], ["input (the middle half)", *(f"seed {i}" for i in range(3))], cell=cell),
         args.out / "editing-outpaint.png")

    frames = pipe.interpolate(CIRCLE, "a large green square at the center on a white background", seed=0,
                              to_seed=1, frames=6, **run).images
    strip_cell = min(cell, 256)  # a strip of frames, not a full-size picture: 256 px keeps the files small
    save(labelled_grid(frames, [f"u = {k / 5:.1f}" for k in range(6)], cell=strip_cell),
         args.out / "editing-interpolation.png")
    from imagen.editing.interpolation import gif_bytes

    small = [f.resize((strip_cell, strip_cell)) for f in frames]
    atomic_write(args.out / "editing-interpolation.gif", gif_bytes(small))

    upscale_picture(pipe, args.out / "upscale.png")

    scales = [0.0, 0.5, 1.0, 1.5]
    diffs = pipe.text_diff(CIRCLE, CIRCLE, CIRCLE.replace("red", "yellow"), scales, seed=2, **run).images
    save(labelled_grid(diffs, [f"scale {s:g}" for s in scales], cell=strip_cell), args.out / "editing-text-diff.png")


def upscale_picture(pipe: Imagen, path: Path) -> None:
    """A 64 px render upscaled to full size by bicubic interpolation and by the SR stages (`Imagen.upscale`),
    next to the true render at that size; below, the same corner of each at 4x zoom (nearest neighbour)."""
    caption = "a small orange circle at the top left on a purple background"
    scene = parse_caption(caption)
    low = render(scene, pipe.stages["base"].resolution)
    size = list(pipe.stages.values())[-1].resolution
    ours = pipe.upscale(caption, low, seed=0, progress=False).images[0]
    panels = [low.resize((size, size), Image.Resampling.NEAREST), low.resize((size, size), Image.Resampling.BICUBIC),
              ours, render(scene, size)]
    x0, y0, _, y1 = object_box(scene.objects[0], size)
    side = size // 8  # around the circle's left edge, shown at 4x in a cell of size / 2
    left, top = int(x0) - side // 2, int((y0 + y1) / 2) - side // 2
    zooms = [p.crop((left, top, left + side, top + side)).resize((size // 2, size // 2), Image.Resampling.NEAREST)
             for p in panels]
    labels = ["64 px input (nearest)", f"bicubic to {size} px", f"SR stages to {size} px", f"true {size} px render"]
    save(labelled_grid(panels + zooms, labels + [f"{label}, 4x zoom" for label in labels], columns=4, cell=size // 2),
         path)


if __name__ == "__main__":
    main()
