"""`imagen-app`: a local web app for drawing and exploring with a saved cascade (Gradio, the optional extra
`pip install -e '.[app]'`).

    imagen-app --model shapes            # serves on 127.0.0.1 at a free port and prints the address

One page: the prompt, negative prompt, number of images and seed, and per stage the guidance scale, steps,
sampler, thresholding and its percentile, and (super-resolution stages) the augmentation level. Text to image
shows each stage's images as soon as that stage is done (64, then 256, then 1024 px); every tab offers the
full-size PNGs, with their prompt and settings in PNG text chunks as imagen-sample writes them. Tabs for the
editing modes: variations of an uploaded image, inpainting a drawn mask, the upscaler, interpolation (strip and
GIF). Requests queue: one generation at a time per model; a bad input is a message on the page, never a crash.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from configs import SAMPLER_NAMES, THRESHOLDING_MODES

from .cli.common import Parser, UsageError, png_bytes, run_main

PROG = "imagen-app"
MAX_IMAGES = 8


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                        help="a shipped model name, a directory written by save_pretrained / imagen-train, or a hub "
                             "name in the local cache")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="precision of the U-Nets (default float32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), _serve, argv)


def _serve(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError("the web app needs Gradio, an optional extra: pip install -e '.[app]'") from None
    from .pipeline import Imagen, resolve_device

    port = serving_port(args.host, args.port)  # before the model loads
    pipe = Imagen.from_pretrained(args.model, device=resolve_device(args.device), dtype=args.dtype)
    app = build_app(pipe)
    print(f"{PROG}: serving {args.model} at http://{args.host}:{port}/ (Ctrl-C to stop)", flush=True)
    app.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=port, quiet=True,
                                                  show_error=True)
    return 0


def serving_port(host: str, port: int) -> int:
    """`port` (0: a free one) once a trial bind on `host` shows the app can serve there; UsageError if not."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port in 1-65535, or leave --port out for a free one")
    try:
        with socket.socket() as probe:
            probe.bind((host, port))
            return probe.getsockname()[1]
    except OSError as e:
        raise UsageError(f"cannot serve at --host {host} --port {port}: {e.strerror or e}") from None


class Controls:
    """The page's shared inputs, in the order the handlers receive them: prompt, negative prompt, number of
    images, seed, random seed, then per stage guidance, steps, sampler, thresholding, percentile, aug level."""

    FIELDS = ("guidance_scale", "num_steps", "sampler", "thresholding", "dynamic_percentile", "aug_level")

    def __init__(self, pipe):
        import gradio as gr

        self.pipe = pipe
        with gr.Row():
            self.prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt", scale=3,
                                     placeholder="a large red circle at the center on a blue background")
            self.negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="negative", scale=2)
        with gr.Row():
            self.count = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images", elem_id="count")
            self.seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
            self.random = gr.Checkbox(value=False, label="Random seed", elem_id="random-seed")
        self.stage_inputs = []
        with gr.Row():
            for name, stage in pipe.stages.items():
                sampler, aug = stage.config.sampler, stage.config.noise_aug
                with gr.Accordion(f"{name} ({stage.resolution} px)", open=False):
                    self.stage_inputs += [
                        gr.Slider(0, 20, value=sampler.guidance_scale, step=0.5, label="Guidance scale",
                                  elem_id=f"{name}-guidance"),
                        gr.Slider(1, 250, value=sampler.num_steps, step=1, label="Steps", elem_id=f"{name}-steps"),
                        gr.Dropdown(list(SAMPLER_NAMES), value=sampler.name, label="Sampler"),
                        gr.Dropdown(list(THRESHOLDING_MODES), value=sampler.thresholding, label="Thresholding"),
                        gr.Slider(0.5, 1.0, value=sampler.dynamic_percentile, step=0.005, label="Dynamic percentile"),
                        gr.Slider(0, 1, value=aug.sample_level, step=0.05, label="Augmentation level",
                                  visible=stage.config.is_super_resolution),
                    ]

    @property
    def inputs(self) -> list:
        return [self.prompt, self.negative, self.count, self.seed, self.random, *self.stage_inputs]

    def read(self, values: list, start_at_stage: str | None = None, need_prompt: bool = True) -> dict:
        """The keyword arguments of a pipeline call from the page's values; gr.Error for a bad one."""
        import gradio as gr

        prompt, negative, count, seed, random_seed, *per_stage = values
        if need_prompt and not (prompt or "").strip():
            raise gr.Error("Enter a prompt first.")
        names = list(self.pipe.stages)
        stages = {name: dict(zip(self.FIELDS, per_stage[i * 6:(i + 1) * 6], strict=True))
                  for i, name in enumerate(names)}
        run = names[names.index(start_at_stage):] if start_at_stage else names
        sr = [n for n in run if self.pipe.stages[n].config.is_super_resolution]
        try:
            options = self.pipe.sampling_options(
                guidance_scale={n: float(stages[n]["guidance_scale"]) for n in run},
                num_inference_steps={n: int(stages[n]["num_steps"]) for n in run},
                sampler={n: stages[n]["sampler"] for n in run},
                thresholding={n: stages[n]["thresholding"] for n in run},
                dynamic_percentile={n: float(stages[n]["dynamic_percentile"]) for n in run},
                aug_level={n: float(stages[n]["aug_level"]) for n in sr} or None,
                start_at_stage=start_at_stage)
        except (TypeError, ValueError) as e:
            raise gr.Error(f"Bad setting: {e}") from None
        seed = secrets.randbelow(2**31 - 1) if random_seed else int(seed or 0)
        return {"prompt": (prompt or "").strip(), "negative_prompt": (negative or "").strip() or None,
                "num_images_per_prompt": int(count), "seed": seed, "options": options}


def build_app(pipe):
    """The Gradio Blocks of the page for `pipe` (not launched)."""
    import gradio as gr

    names = list(pipe.stages)
    with gr.Blocks(title="Imagen cascade") as app:
        sizes = " → ".join(f"{pipe.stages[n].resolution} px" for n in names)
        gr.Markdown(f"### Imagen cascade: {pipe.name_or_path} ({sizes})")
        controls = Controls(pipe)
        with gr.Tab("Text to image", elem_id="tab-generate"):
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                galleries = [gr.Gallery(label=f"{name}: {pipe.stages[name].resolution} px", columns=2, height=360,
                                        object_fit="contain", format="png", elem_id=f"gallery-{name}")
                             for name in names]
            files = gr.File(label="Full-size PNGs (prompt and settings inside)", file_count="multiple",
                            elem_id="download")
            status = gr.Markdown(elem_id="status")

            def text_to_image(*values):  # a generator function, so that Gradio streams each stage
                yield from _text_to_image(pipe, controls, values)

            generate.click(text_to_image, controls.inputs, [*galleries, files, status], concurrency_id="model")
        with gr.Tab("Variations", elem_id="tab-variations"):
            source = gr.Image(type="pil", label="Image (square)", elem_id="variations-image")
            strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength (0 keeps the image, 1 ignores it)")
            _edit_tab(pipe, controls, "variations",
                      lambda v, image, s: pipe.img2img(image=_image(image), strength=float(s), **v),
                      [source, strength])
        with gr.Tab("Inpainting", elem_id="tab-inpaint"):
            canvas = gr.ImageEditor(type="pil", label="Image; paint the region to regenerate",
                                    elem_id="inpaint-editor")
            _edit_tab(pipe, controls, "inpaint",
                      lambda v, edited: pipe.inpaint(image=_image(_background(edited)), mask=_mask(edited), **v),
                      [canvas])
        if len(names) > 1:
            with gr.Tab("Upscale", elem_id="tab-upscale"):
                small = gr.Image(type="pil", label="Image to upscale (square)", elem_id="upscale-image")
                _edit_tab(pipe, controls, "upscale", lambda v, image: pipe.upscale(image=_image(image), **v),
                          [small], start_at_stage=names[1])
        with gr.Tab("Interpolation", elem_id="tab-interpolate"):
            to_prompt = gr.Textbox(label="To prompt", elem_id="to-prompt")
            with gr.Row():
                to_seed = gr.Number(value=1, precision=0, label="To seed")
                frames = gr.Slider(2, 16, value=6, step=1, label="Frames")
            run = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
            strip_image = gr.Image(label="Strip", format="png", elem_id="strip")
            gif = gr.File(label="Frames and GIF", file_count="multiple", elem_id="interpolate-download")
            run.click(lambda *v: _interpolate(pipe, controls, v), [*controls.inputs, to_prompt, to_seed, frames],
                      [strip_image, gif], concurrency_id="model")
    return app


def _edit_tab(pipe, controls: Controls, key: str, call, extra_inputs: list, start_at_stage: str | None = None):
    import gradio as gr

    button = gr.Button("Run", variant="primary", elem_id=f"{key}-run")
    gallery = gr.Gallery(label="Result", columns=4, format="png", elem_id=f"{key}-gallery")
    files = gr.File(label="Full-size PNGs", file_count="multiple", elem_id=f"{key}-download")

    def handler(*values):
        shared, extra = values[:len(controls.inputs)], values[len(controls.inputs):]
        kwargs = controls.read(list(shared), start_at_stage)
        if any(v is None for v in extra[:1]):
            raise gr.Error("Upload an image first.")
        out = _guarded(lambda: call({**kwargs, "progress": False}, *extra))
        return out.images, _write_pngs(out.images)

    button.click(handler, [*controls.inputs, *extra_inputs], [gallery, files], concurrency_id="model")


def _text_to_image(pipe, controls: Controls, values):
    """Each stage's images as soon as that stage is done (a generator: Gradio streams every yield)."""
    import gradio as gr

    kwargs = controls.read(list(values))
    request = _guarded(lambda: pipe.request(kwargs.pop("prompt"), progress=False, **kwargs))
    names = list(pipe.stages)
    shown: list[Any] = [None] * len(names)
    embeds, mask = pipe.encode_prompts(request.prompts)
    negative = None if request.negative_prompts is None else pipe.encode_prompts(request.negative_prompts)
    images, previous = {}, None
    for i, name in enumerate(request.options):
        stage_images = _guarded(lambda n=name, p=previous: pipe.generate_from_embeddings(
            embeds, mask, seeds=request.seeds, options={n: request.options[n]}, negative=negative, start=p,
            progress=False)[n])
        images[name] = previous = stage_images
        shown[names.index(name)] = request.output({name: stage_images}).images
        done = i + 1 == len(request.options)
        status = (f"seed {request.seeds[0]}: done" if done else
                  f"seed {request.seeds[0]}: {name} done, running {list(request.options)[i + 1]}...")
        yield (*shown, gr.update() if not done else _write_pngs(request.output(images).images), status)


def _interpolate(pipe, controls: Controls, values):
    import gradio as gr

    from .editing.interpolation import gif_bytes, strip

    *shared, to_prompt, to_seed, frames = values
    kwargs = controls.read(shared)
    if not (to_prompt or "").strip():
        raise gr.Error("Enter the prompt to interpolate to.")
    out = _guarded(lambda: pipe.interpolate(kwargs["prompt"], to_prompt.strip(), seed=kwargs["seed"],
                                            to_seed=int(to_seed or 0), frames=int(frames),
                                            negative_prompt=kwargs["negative_prompt"], options=kwargs["options"],
                                            progress=False))
    paths = _write_pngs(out.images)
    gif = Path(paths[0]).parent / "interpolation.gif"
    gif.write_bytes(gif_bytes(out.images))
    return strip(out.images), [*paths, str(gif)]


def _guarded(call):
    """Run `call`; a user's mistake (ValueError, OSError) becomes a message on the page."""
    import gradio as gr

    try:
        return call()
    except (ValueError, OSError) as e:
        raise gr.Error(" ".join(str(e).split())) from None


def _write_pngs(images: list) -> list[str]:
    """The images as PNG files (with their prompt and settings) in a fresh temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="imagen-app-"))
    paths = []
    for k, image in enumerate(images):
        path = folder / f"{k:03d}.png"
        path.write_bytes(png_bytes(image))
        paths.append(str(path))
    return paths


def _image(image):
    if image is None:
        raise ValueError("upload an image first")
    return image.convert("RGB")


def _background(edited: dict | None):
    if not edited or edited.get("background") is None:
        raise ValueError("upload an image to inpaint first")
    return edited["background"]


def _mask(edited: dict):
    """White where the user painted (any layer), black elsewhere."""
    from PIL import Image

    background = edited["background"]
    mask = Image.new("L", background.size, 0)
    for layer in edited.get("layers") or []:
        alpha = layer.convert("RGBA").getchannel("A")
        mask.paste(255, mask=alpha.point(lambda a: 255 if a > 0 else 0))
    if mask.getbbox() is None:
        raise ValueError("paint the region to regenerate on the image first")
    return mask


if __name__ == "__main__":
    sys.exit(main())
