"""`Imagen`: the cascade as a library object. Text is encoded once; each stage samples with its own guidance
scale, steps, sampler, thresholding and (SR stages) augmentation level; each SR stage upsamples the
previous stage's output. Image i of a call draws all its noise from its own generator (seed + i), so an
image does not depend on the batch it was drawn in.

    pipe = Imagen.from_pretrained("shapes")
    images = pipe(["a large red circle at the center on a blue background"], guidance_scale=[5.0, 4.0, 4.0],
                  num_steps=[25, 15, 10], sampler="dpm++", thresholding="dynamic", aug_level=0.1, seed=0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from configs import RunConfig

from . import checkpoint
from .images import to_pil
from .noise import generators
from .stage import SamplingOptions, Stage
from .text import TextEncoder, load_text_encoder, parse_dtype

PerStage = Any  # a value for every stage, or a sequence with one per stage run


class Imagen(nn.Module):
    """A cascade of `Stage`s (ModuleDict `stages`, in order) and a frozen text encoder."""

    def __init__(self, config: RunConfig, text_encoder: TextEncoder):
        super().__init__()
        self.config = config
        self.text_encoder = text_encoder
        self.stages = nn.ModuleDict({name: Stage(cfg, text_encoder.embed_dim) for name, cfg in config.stages().items()})

    @classmethod
    def from_config(cls, config: RunConfig, device: str | torch.device | None = None) -> Imagen:
        """A freshly initialised cascade, with the text encoder the config names. `device`: None (the CPU),
        "auto" (a GPU if there is one, else the CPU), or any torch device."""
        device = resolve_device(device)
        return cls(config, load_text_encoder(config.text, device=device)).to(device)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device | None = None,
                        text_encoder: TextEncoder | None = None, dtype: str | torch.dtype | None = None) -> Imagen:
        """Load a shipped model by name (`shapes`), a directory written by `save_pretrained`/`imagen-train`, or a
        hub repo in the local cache. The text encoder is the one recorded in the model (checked by hash).
        `dtype`: the U-Nets' precision (default float32; "bfloat16" or "float16" halve memory, sampling stays
        in float32 between network calls)."""
        device = resolve_device(device)
        dtype = torch.float32 if dtype is None else parse_dtype(dtype)
        directory = checkpoint.resolve_model(name_or_path)
        config, identity, weights = checkpoint.read_model(directory)
        encoder = text_encoder or load_text_encoder(config.text, device=device)
        _check_text_encoder(identity, encoder, directory)
        pipe = cls(config, encoder)
        for name, stage in pipe.stages.items():
            checkpoint.load_weights(stage.net, weights[name], directory / checkpoint.weights_file(name))
        return pipe.to(device, dtype).eval()

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None,
                        state_dicts: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
        """Write config.json + one safetensors file per stage (`dtype`, e.g. torch.float16, to ship smaller).
        `state_dicts` overrides the weights written (the trainer passes EMA weights, or only trained stages)."""
        weights = state_dicts if state_dicts is not None else {n: s.net.state_dict() for n, s in self.stages.items()}
        return checkpoint.write_model(directory, self.config, self.text_encoder.identity, weights, dtype)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings (B, L, D) and mask (B, L), on the cascade's device."""
        embeds, mask = self.text_encoder.encode(list(prompts))
        return embeds.to(self.device, torch.float32), mask.to(self.device)

    @torch.no_grad()
    def generate(self, prompts: str | Sequence[str], *, guidance_scale: PerStage = None, num_steps: PerStage = None,
                 sampler: PerStage = None, thresholding: PerStage = None, dynamic_percentile: PerStage = None,
                 aug_level: float | Sequence[float] | None = None, time_grid: PerStage = None, seed: int = 0,
                 num_images_per_prompt: int = 1, negative_prompt: str | Sequence[str] | None = None,
                 stop_at_stage: int | str | None = None, max_batch_size: int | None = None,
                 progress: bool = True, edit: Any = None) -> dict[str, torch.Tensor]:
        """Run the cascade; returns every stage's images, {stage name: (N, 3, R, R) in [-1, 1]}. Per-stage
        arguments take one value for all stages or a sequence with one per stage run (`aug_level`: one per SR
        stage run). `None` keeps each stage's configured default. Image i uses seed `seed + i`. `edit`: an
        imagen.editing edit applied to every stage (what `img2img` and `inpaint` pass)."""
        prompts = _prompt_list(prompts)
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        options = self.sampling_options(guidance_scale=guidance_scale, num_steps=num_steps, sampler=sampler,
                                        thresholding=thresholding, dynamic_percentile=dynamic_percentile,
                                        aug_level=aug_level, time_grid=time_grid, stop_at_stage=stop_at_stage)
        negatives = _negative_prompts(negative_prompt, len(prompts))
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        embeds, mask = self.encode_prompts(prompts)
        negative = None
        if negatives is not None:
            negative = self.encode_prompts([n for n in negatives for _ in range(num_images_per_prompt)])
        return self.generate_from_embeddings(embeds, mask, seeds=[seed + i for i in range(len(prompts))],
                                             options=options, negative=negative, edit=edit,
                                             max_batch_size=max_batch_size, progress=progress)

    @torch.no_grad()
    def generate_from_embeddings(self, text_embeds: torch.Tensor, text_mask: torch.Tensor, *, seeds: Sequence[Any],
                                 options: dict[str, SamplingOptions] | None = None,
                                 negative: tuple[torch.Tensor, torch.Tensor] | None = None, edit: Any = None,
                                 start: torch.Tensor | None = None, max_batch_size: int | None = None,
                                 progress: bool = True) -> dict[str, torch.Tensor]:
        """Run the cascade on given text embeddings (B, L, D) and mask (B, L) (as `encode_prompts` returns
        them; the editing modes mix them); returns {stage name: (B, 3, R, R) in [-1, 1]}. `seeds`: one per
        image, an int or a noise source with `.generator(offset, device)` (imagen.editing.interpolation.SlerpSeeds);
        `options`: from `sampling_options` (default: every stage with its defaults); `negative`: (embeds, mask)
        replacing the null condition; `edit`: an imagen.editing edit (img2img, inpainting) applied to every stage;
        `start` (B, 3, r, r) in [-1, 1]: the images that stand for the stages before the first one in `options`
        (the input of the first SR stage run, at its low-res size)."""
        options = self.sampling_options() if options is None else options
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if len(seeds) != text_embeds.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {text_embeds.shape[0]} images")
        outputs: dict[str, torch.Tensor] = {}
        previous = None if start is None else start.to(self.device, torch.float32)
        for name in options:
            stage = self.stages[name]
            if stage.config.is_super_resolution and previous is None:
                raise ValueError(f"stage {name} is super-resolution and needs a previous stage in this cascade")
            outputs[name] = self._sample_stage(name, stage, text_embeds, text_mask, negative, previous, list(seeds),
                                               options[name], max_batch_size or len(seeds), progress, edit)
            previous = outputs[name]
        return outputs

    def __call__(self, prompts: str | Sequence[str], *, output_type: str = "pil", **kwargs) -> list[Image.Image] | \
            torch.Tensor:
        """Images of the last stage run: a list of PIL images (`output_type="pil"`) or a tensor (N, 3, R, R) in
        [-1, 1] (`"tensor"`). Takes the arguments of `generate`."""
        _check_output_type(output_type)
        return _final_images(self.generate(prompts, **kwargs), output_type)

    # editing and exploration (imagen.editing): each takes the arguments of `generate` too
    def img2img(self, prompts: str | Sequence[str], image, strength: float | Sequence[float] = 0.6, **kwargs):
        """Variations of `image` (path, PIL or (3, H, W) tensor in [-1, 1]) noised to `strength` in [0, 1]
        (one value, or one per stage) and denoised with the prompts; see imagen.editing.image_edit."""
        from .editing.image_edit import img2img

        return img2img(self, prompts, image, strength, **kwargs)

    def inpaint(self, prompts: str | Sequence[str], image, mask, *, resample_steps: int = 1, **kwargs):
        """Regenerate the white part of `mask` (black = keep, kept exactly), with `resample_steps` RePaint
        tries per step; see imagen.editing.image_edit."""
        from .editing.image_edit import inpaint

        return inpaint(self, prompts, image, mask, resample_steps=resample_steps, **kwargs)

    def outpaint(self, prompts: str | Sequence[str], image, margins: Sequence[int], **kwargs):
        """Extend `image` by (left, top, right, bottom) pixels to a square and fill the border."""
        from .editing.image_edit import outpaint

        return outpaint(self, prompts, image, margins, **kwargs)

    def interpolate(self, prompt: str, to_prompt: str | None = None, *, seed: int = 0, to_seed: int | None = None,
                    frames: int = 8, **kwargs):
        """`frames` images from (prompt, seed) to (to_prompt, to_seed): slerped noise, interpolated text
        embeddings; the ends are the plain samples. See imagen.editing.interpolation."""
        from .editing.interpolation import interpolate

        return interpolate(self, prompt, to_prompt, seed=seed, to_seed=to_seed, frames=frames, **kwargs)

    def text_diff(self, prompt: str, source: str, target: str, scales: float | Sequence[float] = 1.0, **kwargs):
        """One image per scale, conditioned on embed(prompt) + scale (embed(target) - embed(source)) at one
        seed; see imagen.editing.prompt_diff."""
        from .editing.prompt_diff import text_diff

        return text_diff(self, prompt, source, target, scales, **kwargs)

    @torch.no_grad()
    def upscale(self, prompts: str | Sequence[str], image, *, seed: int = 0, output_type: str = "pil",
                negative_prompt: str | Sequence[str] | None = None, max_batch_size: int | None = None,
                progress: bool = True, **sampling: Any) -> list[Image.Image] | torch.Tensor:
        """The super-resolution stages alone on a given image: `image` (a path, PIL image or (3, H, W) tensor in
        [-1, 1], square; or one per prompt) stands for the base stage's output, resized (with a warning) to the
        first SR stage's input size, and each prompt describes it. Per-stage `sampling` arguments (those of
        `generate`: guidance_scale, num_steps, aug_level, stop_at_stage, ...) count the SR stages only. Returns
        what `__call__` does: the final images, PIL or a (N, 3, R, R) tensor in [-1, 1]."""
        from .editing.images import load_image, resize_image

        _check_output_type(output_type)
        prompts = _prompt_list(prompts)
        sr_names = [n for n, stage in self.stages.items() if stage.config.is_super_resolution]
        if not sr_names:
            raise ValueError("this model has no super-resolution stage to upscale with")
        sources = list(image) if isinstance(image, (list, tuple)) else [image] * len(prompts)
        if len(sources) != len(prompts):
            raise ValueError(f"got {len(sources)} images for {len(prompts)} prompts: give one image, or one per prompt")
        options = self.sampling_options(start_at_stage=sr_names[0], **sampling)
        size = self.stages[sr_names[0]].config.lowres_resolution
        loaded = [load_image(source, "the image to upscale") for source in sources]
        for tensor in loaded:
            if tensor.shape[-1] != size:
                warnings.warn(f"resizing the {tensor.shape[-1]}x{tensor.shape[-2]} image to {size}x{size}, the input "
                              f"size of the first super-resolution stage ({sr_names[0]})", stacklevel=3)
        start = torch.cat([resize_image(tensor, size) for tensor in loaded])
        negatives = _negative_prompts(negative_prompt, len(prompts))
        embeds, mask = self.encode_prompts(prompts)
        negative = None if negatives is None else self.encode_prompts(negatives)
        outputs = self.generate_from_embeddings(embeds, mask, seeds=[seed + i for i in range(len(prompts))],
                                                options=options, negative=negative, start=start,
                                                max_batch_size=max_batch_size, progress=progress)
        return _final_images(outputs, output_type)

    def sampling_options(self, *, guidance_scale: PerStage = None, num_steps: PerStage = None, sampler: PerStage = None,
                         thresholding: PerStage = None, dynamic_percentile: PerStage = None,
                         aug_level: float | Sequence[float] | None = None, time_grid: PerStage = None,
                         stop_at_stage: int | str | None = None, start_at_stage: str | None = None
                         ) -> dict[str, SamplingOptions]:
        """{stage name: its resolved SamplingOptions} for the stages `generate` would run with these
        arguments (defaults filled in, values checked): what a run used, for records and file metadata.
        `start_at_stage`: the name of the first stage run (`upscale` starts at the first SR stage)."""
        names = self._stages_to_run(stop_at_stage)
        if start_at_stage is not None:
            if start_at_stage not in names:
                raise ValueError(f"stop_at_stage {stop_at_stage!r} ends the run before its first stage, "
                                 f"{start_at_stage}")
            names = names[names.index(start_at_stage):]
        stages = (list(self.stages), names)
        srs = tuple([n for n in group if self.stages[n].config.is_super_resolution] for group in stages)
        return {name: self.stages[name].resolve_options(SamplingOptions(
            guidance_scale=_per_stage(guidance_scale, stages, name, "guidance_scale"),
            num_steps=_per_stage(num_steps, stages, name, "num_steps"),
            sampler=_per_stage(sampler, stages, name, "sampler"),
            thresholding=_per_stage(thresholding, stages, name, "thresholding"),
            dynamic_percentile=_per_stage(dynamic_percentile, stages, name, "dynamic_percentile"),
            time_grid=_per_stage(time_grid, stages, name, "time_grid"),
            aug_level=_per_stage(aug_level, srs, name, "aug_level", "super-resolution stages")
            if name in srs[1] else None,
        )) for name in names}

    def _stages_to_run(self, stop_at_stage: int | str | None) -> list[str]:
        names = list(self.stages)
        if stop_at_stage is None:
            return names
        if isinstance(stop_at_stage, str):
            if stop_at_stage not in names:
                raise ValueError(f"stop_at_stage {stop_at_stage!r} is not a stage of this model: {', '.join(names)}")
            return names[: names.index(stop_at_stage) + 1]
        if not 1 <= stop_at_stage <= len(names):
            raise ValueError(f"stop_at_stage must be between 1 and {len(names)} (this model's stages: "
                             f"{', '.join(names)}), got {stop_at_stage}")
        return names[:stop_at_stage]

    def _sample_stage(self, name: str, stage: Stage, embeds, mask, negative, previous, seeds, options, chunk,
                      progress, edit=None) -> torch.Tensor:
        from tqdm.auto import tqdm

        steps = options.num_steps if edit is None else edit.num_steps(name, stage, options)
        bar = tqdm(total=steps * ((len(seeds) + chunk - 1) // chunk), desc=f"{name} {stage.resolution}px",
                   disable=not progress, leave=False, unit="step")
        # each image's generator draws the stage's noise in the same order whatever the batch: the stage seed
        # is offset so stages draw independent noise
        offset = 1_000_003 * list(self.stages).index(name)
        pieces = []
        for start in range(0, len(seeds), chunk):
            rows = slice(start, start + chunk)
            neg = None if negative is None else (negative[0][rows], negative[1][rows])
            run = stage.prepare(embeds[rows], mask[rows], _generators(seeds[rows], offset, self.device), options,
                                lowres=None if previous is None else previous[rows], negative=neg)
            callback = lambda *_: bar.update(1)  # noqa: E731
            pieces.append(run.run(callback=callback) if edit is None else edit.sample(name, stage, run, rows, callback))
        bar.close()
        return torch.cat(pieces)


def _generators(seeds: Sequence[Any], offset: int, device: torch.device) -> list:
    """One noise generator per image for the stage whose seeds are offset by `offset`: ints are seeds, other
    objects make their own (`seed.generator(offset, device)`, e.g. interpolated noise)."""
    return [s.generator(offset, device) if hasattr(s, "generator") else generators([int(s) + offset], device)[0]
            for s in seeds]


def _per_stage(value: Any, choices: tuple[list[str], list[str]], name: str, what: str,
               kind: str = "stages") -> Any:
    """The value for stage `name`: one value for all, or a sequence with one per stage of the model or one per
    stage run (`choices`: those two name lists; `kind` names what they are in the error)."""
    if value is None or isinstance(value, (str, int, float)) or callable(value):
        return value
    values = list(value)
    if len(values) == 1:
        return values[0]
    for names in choices:
        if len(values) == len(names):
            return values[names.index(name)]
    raise ValueError(f"{what} has {len(values)} values but this model has {len(choices[0])} {kind} "
                     f"({', '.join(choices[0]) or 'none'}) and this call runs {len(choices[1])}: give one value, "
                     f"or one per {kind.removesuffix('s')}")


def _prompt_list(prompts: str | Sequence[str]) -> list[str]:
    """One prompt or several, as a checked non-empty list of strings."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    return prompts


def _check_output_type(output_type: str) -> None:
    if output_type not in ("pil", "tensor"):
        raise ValueError(f"output_type must be 'pil' or 'tensor', got {output_type!r}")


def _final_images(outputs: dict[str, torch.Tensor], output_type: str) -> list[Image.Image] | torch.Tensor:
    """The last stage's images of a run: PIL images, or the (N, 3, R, R) tensor in [-1, 1]."""
    final = list(outputs.values())[-1]
    return to_pil(final) if output_type == "pil" else final


def _negative_prompts(negative_prompt: str | Sequence[str] | None, count: int) -> list[str] | None:
    """One negative prompt per prompt (a single one is used for all), or None."""
    if negative_prompt is None:
        return None
    negatives = [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
    if not all(isinstance(n, str) for n in negatives):
        raise ValueError("negative_prompt must be a string or a list of strings")
    if len(negatives) == 1:
        return negatives * count
    if len(negatives) != count:
        raise ValueError(f"got {len(negatives)} negative prompts for {count} prompts: give one for all, or one "
                         "per prompt")
    return negatives


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> the CPU; "auto" -> the first GPU (CUDA, then Apple MPS) if there is one, else the CPU; else the
    torch device named, checked to exist (ValueError with what is available)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU is available here (use auto or cpu)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) here "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r}: Apple MPS is not available here (use auto or cpu)")
    elif resolved.type != "cpu":
        raise ValueError(f"device {device!r}: unsupported; use auto, cpu, cuda, cuda:N or mps")
    return resolved


def _check_text_encoder(saved: dict, encoder: TextEncoder, directory: Path) -> None:
    expected, got = saved.get("sha256"), encoder.identity.get("sha256")
    if expected and got and expected != got:
        raise ValueError(f"{directory / checkpoint.CONFIG_FILE}: the text encoder {encoder.identity.get('name')!r} "
                         f"differs from the one this model was trained with ({saved.get('name')!r}, sha256 "
                         f"{expected[:12]}...); load that encoder (text.name) or retrain")
