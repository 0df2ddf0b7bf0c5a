"""`Imagen`: the cascade as a library object. Text is encoded once; each stage samples with its own guidance
scale, steps, sampler, thresholding and (SR stages) augmentation level; each SR stage upsamples the
previous stage's output. Image i of a call draws all its noise from its own generator (seed + i), so an
image does not depend on the batch it was drawn in.

    pipe = Imagen.from_pretrained("shapes")
    out = pipe("a large red circle at the center on a blue background", guidance_scale=[5.0, 1.0, 1.0],
               num_inference_steps=[25, 1, 1], sampler="dpm++", thresholding="dynamic", aug_level=0.1, seed=0)
    out.images[0].save("circle.png")   # PIL, with the prompt and settings in .info
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from configs import RunConfig

from . import checkpoint
from .io import available_memory
from .noise import check_seed, generators
from .options import SamplingOptions, StageOptions, StageValue, per_stage
from .output import ImagenOutput, check_output_type
from .request import Request
from .stage import Stage, StageEdit
from .text import DTYPES, EMBEDDED, TextEncoder, load_text_encoder, pad_tokens, parse_dtype, same_encoder


class Imagen(nn.Module):
    """A cascade of `Stage`s (ModuleDict `stages`, in order) and a frozen text encoder."""

    def __init__(self, config: RunConfig, text_encoder: TextEncoder):
        super().__init__()
        self.config = config
        self.text_encoder = text_encoder
        self.stages = nn.ModuleDict({name: Stage(cfg, text_encoder.embed_dim) for name, cfg in config.stages().items()})
        self.name_or_path: str | None = None  # what from_pretrained loaded
        self.base_model: dict | None = None  # the model it was fine-tuned from, as its config.json records it
        self.loras: list[dict] = []  # the LoRA adapters added by load_lora, recorded with every image
        self.compiled: list[str] = []  # the stages `compile` compiled
        self._compiled_for: tuple | None = None  # (device, dtype) their frozen weights hold

    @classmethod
    def from_config(cls, config: RunConfig, device: str | torch.device | None = None) -> Imagen:
        """A freshly initialised cascade, with the text encoder the config names. `device`: None (the CPU),
        "auto" (a GPU if there is one, else the CPU), or any torch device."""
        device = resolve_device(device)
        check_model_size(config)
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
        config, document, weights = checkpoint.read_model(directory)
        identity = document.get("text_encoder", {})
        check_model_size(config, directory)
        encoder = text_encoder or load_text_encoder(config.text, device=device)
        _check_text_encoder(identity, encoder, directory)
        pipe = cls(config, encoder)
        pipe.name_or_path = str(name_or_path)
        pipe.base_model = document.get("base_model")
        for name, stage in pipe.stages.items():
            checkpoint.load_weights(stage.net, weights[name], directory / checkpoint.weights_file(name))
        return pipe.to(device, dtype).eval()

    def load_lora(self, directory: str | Path, scale: float = 1.0, merge: bool = False,
                  name: str | None = None) -> str:
        """Add LoRA adapters trained with `imagen-train --init-from MODEL --lora RANK` (a directory holding
        lora.json and lora.safetensors) at `scale`; several can be loaded, each with its scale. `merge` adds
        them into the weights. Returns the adapter's name; see imagen.lora."""
        from .lora import load_lora

        if self.compiled:
            raise ValueError("load LoRA adapters before compile(): the compiled U-Nets hold their weights frozen")
        name = load_lora(self, directory, scale=scale, merge=merge, name=name)
        self.loras.append({"adapter": str(directory), "name": name, "scale": scale, "merged": merge})
        return name

    def compile(self, stages: Sequence[str] | None = None, **kwargs: Any) -> Imagen:
        """torch.compile the U-Nets of `stages` (default every stage) in place, for sampling; the first call of each
        pays the compile, which torch caches on disk for later processes. `kwargs` go to torch.compile; unless
        they name a `mode`, `options` or another backend, the weights are frozen into the graph (inductor's `freezing`:
        constants folded and, on a CPU, oneDNN weights prepacked), so load LoRA adapters and choose the dtype
        first. Sizes are fixed (`dynamic=False`): one graph per stage and batch size, and torch keeps 8 for the
        U-Nets' shared forward in a process (`torch._dynamo.config.recompile_limit`), beyond which a stage runs
        eagerly with torch's warning. On 2 CPU cores this pays for the 64 px base alone (`bench/mfu.py --levers`).
        Returns the pipe."""
        names = list(self.stages) if stages is None else [stages] if isinstance(stages, str) else list(stages)
        unknown = [n for n in names if n not in self.stages]
        if unknown:
            raise ValueError(f"no stage {unknown[0]!r} to compile; this model's stages: {', '.join(self.stages)}")
        if kwargs.get("backend", "inductor") == "inductor" and "mode" not in kwargs:
            kwargs.setdefault("options", {"freezing": True})
        kwargs.setdefault("dynamic", False)
        for name in names:
            self.stages[name].net.compile(**kwargs)
        self.compiled = [n for n in self.stages if n in names or n in self.compiled]
        self._compiled_for = (self.device, self.dtype)
        return self

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None,
                        state_dicts: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
        """Write config.json + one safetensors file per stage (`dtype`, e.g. torch.float16, to ship smaller).
        `state_dicts` overrides the weights written (the trainer passes EMA weights, or only trained stages). The
        model it was fine-tuned from, if any (`base_model`), is recorded again. LoRA adapters loaded with
        `merge=True` are saved in the weights (a model of its own); unmerged ones are refused."""
        from .lora import without_adapters

        if state_dicts is None:
            if any(not lora["merged"] for lora in self.loras):
                raise ValueError("LoRA adapters are loaded unmerged: load them with merge=True to save the adapted "
                                 "model, or save the adapters themselves (imagen-train --lora writes them)")
            state_dicts = {n: without_adapters(s.net.state_dict()) for n, s in self.stages.items()}
        dtype = None if dtype is None else parse_dtype(dtype)
        if dtype is not None and dtype not in DTYPES.values():
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
        return checkpoint.write_model(directory, self.config, self.text_encoder.identity, state_dicts, dtype,
                                      base_model=self.base_model)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The U-Nets' precision."""
        return next(self.stages.parameters()).dtype

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings (B, L, D) and mask (B, L), on the cascade's device; L is the longest prompt's length, or
        the encoder's `max_length` once a stage is compiled (one graph for every prompt: a new length would
        compile the stage again, with symbolic shapes, for longer than the first time)."""
        embeds, mask = self.text_encoder.encode(list(prompts))
        if self.compiled:
            embeds, mask = pad_tokens(embeds, mask, self.text_encoder.max_length)
        return embeds.to(self.device, torch.float32), mask.to(self.device)

    def request(self, prompt: str | Sequence[str], *, negative_prompt: str | Sequence[str] | None = None,
                num_images_per_prompt: int = 1, seed: int | None = None,
                generator: torch.Generator | Sequence[torch.Generator] | None = None,
                max_batch_size: int | None = None, progress: bool = True, options: StageOptions | None = None,
                **sampling: StageValue) -> Request:
        """Everything a call asks for, checked and resolved once: `sampling` (the per-stage arguments of
        `sampling_options`), or `options` already resolved by it. Image i of the request is prompt
        i // num_images_per_prompt, drawn with seed `seed + i` (default seed 0), or with a seed drawn from
        `generator` (one for all images, or one each)."""
        if self._compiled_for not in (None, (self.device, self.dtype)):  # frozen weights: stale, or NaN
            raise ValueError(f"the stages were compiled on {self._compiled_for[0]} in {self._compiled_for[1]}, not "
                             f"{self.device} in {self.dtype}: move the pipe first, then compile()")
        prompts = _prompt_list(prompt)
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) \
                or num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an integer >= 1, got {num_images_per_prompt!r}")
        if max_batch_size is not None and (isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int)
                                           or max_batch_size < 1):
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        accepted = inspect.signature(self.sampling_options).parameters
        unknown = sorted(set(sampling) - set(accepted))
        if unknown:
            raise TypeError(f"unexpected argument {unknown[0]!r}; the per-stage sampling arguments are "
                            f"{', '.join(accepted)}")
        if options is None:
            options = self.sampling_options(**sampling)
        elif sampling:
            raise ValueError(f"give options or per-stage arguments ({', '.join(sampling)}), not both")
        elif not options or not set(options) <= set(self.stages):
            raise ValueError(f"options must map stages of this model ({', '.join(self.stages)}) to their options")
        self._warn_unknown_words(prompts)
        self._warn_truncated(prompts)
        negatives = _negative_prompts(negative_prompt, len(prompts))
        repeat = lambda texts: [t for t in texts for _ in range(num_images_per_prompt)]  # noqa: E731
        images = repeat(prompts)
        return Request(prompts=images, negative_prompts=None if negatives is None else repeat(negatives),
                       seeds=image_seeds(seed, generator, len(images)), options=options,
                       max_batch_size=max_batch_size, progress=progress, model=self.describe())

    def _warn_unknown_words(self, prompts: list[str]) -> None:
        """A warning for each prompt mostly made of words the embedded encoder has never seen (it would draw a
        smear, silently)."""
        if self.config.text.name != EMBEDDED or not hasattr(self.text_encoder, "unknown_words"):
            return
        for text in dict.fromkeys(prompts):
            unknown = self.text_encoder.unknown_words(text)
            if 2 * len(unknown) > len(text.split()):
                warnings.warn(f"most words of the prompt {text!r} are unknown to the embedded text encoder "
                              f"({', '.join(unknown[:4])}{', ...' if len(unknown) > 4 else ''}), which knows only "
                              "the shapes captions' words; the image will not follow them", stacklevel=4)

    def _warn_truncated(self, prompts: list[str]) -> None:
        """A warning for each prompt longer than the text encoder reads: its tail would be dropped silently."""
        if not hasattr(self.text_encoder, "dropped_tail"):
            return
        for text in dict.fromkeys(prompts):
            tail = self.text_encoder.dropped_tail(text)
            if tail:
                warnings.warn(f"the prompt {text[:60]!r}{'...' if len(text) > 60 else ''} is longer than the "
                              f"{self.text_encoder.max_length} tokens the text encoder reads: {tail!r} is ignored",
                              stacklevel=4)

    def describe(self) -> dict:
        """The model-level settings recorded with every image: where the model came from, its text encoder,
        device and precision."""
        return {"model": self.name_or_path, "text_encoder": self.config.text.name, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "resolutions": {name: stage.resolution for name, stage in self.stages.items()},
                **({"lora": list(self.loras)} if self.loras else {})}

    @torch.no_grad()
    def run(self, request: Request, *, edit: StageEdit | None = None, start: torch.Tensor | None = None
            ) -> dict[str, torch.Tensor]:
        """Sample a request; every stage's images, {stage name: (N, 3, R, R) in [-1, 1]}. `edit`: an image edit
        (imagen.editing) applied to every stage; `start`: see `generate_from_embeddings`."""
        embeds, mask = self.encode_prompts(request.prompts)
        negative = None if request.negative_prompts is None else self.encode_prompts(request.negative_prompts)
        return self.generate_from_embeddings(embeds, mask, seeds=request.seeds, options=request.options,
                                             negative=negative, edit=edit, start=start,
                                             max_batch_size=request.max_batch_size, progress=request.progress)

    def generate(self, prompt: str | Sequence[str], *, edit: StageEdit | None = None,
                 **kwargs: Any) -> dict[str, torch.Tensor]:
        """Every stage's images as tensors, {stage name: (N, 3, R, R) in [-1, 1]}. Takes the arguments of
        `request` (and so of `sampling_options`)."""
        return self.run(self.request(prompt, **kwargs), edit=edit)

    def __call__(self, prompt: str | Sequence[str], *, output_type: str = "pil", return_all_stages: bool = False,
                 **kwargs: Any) -> ImagenOutput:
        """Text to images, in diffusers' terms:

            out = pipe(prompt="a large red circle at the center on a blue background", negative_prompt=None,
                       num_inference_steps=[25, 15, 10], guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
                       num_images_per_prompt=2, output_type="pil")
            out.images[0].save("circle.png")

        Takes the arguments of `request`: prompt, negative_prompt, num_images_per_prompt, seed or generator,
        max_batch_size, progress, and the per-stage options guidance_scale, num_inference_steps, sampler,
        thresholding, dynamic_percentile, time_grid, aug_level (SR stages), stop_at_stage. Returns an
        `ImagenOutput`: `.images` as `output_type` ("pil", "np" or "pt"), `.stage_images` with
        `return_all_stages`, `.seeds`, `.settings`; PIL images carry prompt and settings in `.info`."""
        check_output_type(output_type)
        request = self.request(prompt, **kwargs)
        return request.output(self.run(request), output_type, return_all_stages)

    @torch.no_grad()
    def generate_from_embeddings(self, text_embeds: torch.Tensor, text_mask: torch.Tensor, *, seeds: Sequence[Any],
                                 options: StageOptions | None = None,
                                 negative: tuple[torch.Tensor, torch.Tensor] | None = None,
                                 edit: StageEdit | None = None, start: torch.Tensor | None = None,
                                 max_batch_size: int | None = None, progress: bool = True) -> dict[str, torch.Tensor]:
        """Run the cascade on given text embeddings (B, L, D) and mask (B, L) (as `encode_prompts` returns
        them; the editing modes mix them); returns {stage name: (B, 3, R, R) in [-1, 1]}. `seeds`: one per
        image, an int or a noise source with `.generator(offset, device)` (imagen.editing.interpolation.SlerpSeeds);
        `options`: from `sampling_options` (default: every stage with its defaults); `negative`: (embeds, mask)
        replacing the null condition; `edit`: an image edit (img2img, inpainting) applied to every stage;
        `start` (B, 3, r, r) in [-1, 1]: the images that stand for the stages before the first one in `options`
        (the input of the first SR stage run, at its low-res size). One progress bar runs across all stages."""
        from tqdm.auto import tqdm

        options = self.sampling_options() if options is None else options
        if len(seeds) != text_embeds.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {text_embeds.shape[0]} images")
        chunk = max_batch_size or len(seeds)
        batches = (len(seeds) + chunk - 1) // chunk
        steps = sum(options[name].num_steps if edit is None else edit.num_steps(name, self.stages[name], options[name])
                    for name in options)
        bar = tqdm(total=batches * steps, disable=not progress, leave=False, unit="step")
        outputs: dict[str, torch.Tensor] = {}
        previous = None if start is None else start.to(self.device, torch.float32)
        try:
            for name in options:
                stage = self.stages[name]
                if stage.config.is_super_resolution and previous is None:
                    raise ValueError(f"stage {name} is super-resolution and needs a previous stage in this cascade")
                bar.set_description(f"{name} {stage.resolution}px")
                outputs[name] = self._sample_stage(name, text_embeds, text_mask, negative, previous, list(seeds),
                                                   options[name], chunk, lambda *_: bar.update(1), edit)
                previous = outputs[name]
        finally:
            bar.close()
        return outputs

    # editing and exploration (imagen.editing): each takes the arguments of `request` too and returns an
    # ImagenOutput
    def img2img(self, prompt: str | Sequence[str], image, strength: StageValue = 0.6, **kwargs) -> ImagenOutput:
        """Variations of `image` (path, PIL or (3, H, W) tensor in [-1, 1]) noised to `strength` in [0, 1]
        (per stage) and denoised with the prompts; see imagen.editing.image_edit."""
        from .editing.image_edit import img2img

        return img2img(self, prompt, image, strength, **kwargs)

    def inpaint(self, prompt: str | Sequence[str], image, mask, *, resample_steps: int = 1, **kwargs) -> ImagenOutput:
        """Regenerate the white part of `mask` (black = keep, kept exactly), with `resample_steps` RePaint
        tries per step; see imagen.editing.image_edit."""
        from .editing.image_edit import inpaint

        return inpaint(self, prompt, image, mask, resample_steps=resample_steps, **kwargs)

    def outpaint(self, prompt: str | Sequence[str], image, margins: Sequence[int], **kwargs) -> ImagenOutput:
        """Extend `image` by (left, top, right, bottom) pixels to a square and fill the border."""
        from .editing.image_edit import outpaint

        return outpaint(self, prompt, image, margins, **kwargs)

    def upscale(self, prompt: str | Sequence[str], image, **kwargs) -> ImagenOutput:
        """The super-resolution stages alone on a given image (it stands for the base stage's output, resized
        with a warning to the first SR stage's input size); per-stage options count the SR stages only; see
        imagen.editing.image_edit."""
        from .editing.image_edit import upscale

        return upscale(self, prompt, image, **kwargs)

    def interpolate(self, prompt: str, to_prompt: str | None = None, *, seed: int = 0, to_seed: int | None = None,
                    frames: int = 8, **kwargs) -> ImagenOutput:
        """`frames` images from (prompt, seed) to (to_prompt, to_seed): slerped noise, interpolated text
        embeddings; the ends are the plain samples. See imagen.editing.interpolation."""
        from .editing.interpolation import interpolate

        return interpolate(self, prompt, to_prompt, seed=seed, to_seed=to_seed, frames=frames, **kwargs)

    def text_diff(self, prompt: str, source: str, target: str, scales: float | Sequence[float] = 1.0,
                  **kwargs) -> ImagenOutput:
        """One image per scale, conditioned on embed(prompt) + scale (embed(target) - embed(source)) at one
        seed; see imagen.editing.prompt_diff."""
        from .editing.prompt_diff import text_diff

        return text_diff(self, prompt, source, target, scales, **kwargs)

    def sampling_options(self, *, guidance_scale: StageValue = None, num_inference_steps: StageValue = None,
                         sampler: StageValue = None, thresholding: StageValue = None,
                         dynamic_percentile: StageValue = None, time_grid: StageValue = None,
                         aug_level: StageValue = None, stop_at_stage: int | str | None = None,
                         start_at_stage: str | None = None) -> StageOptions:
        """{stage name: its resolved SamplingOptions} for the stages a call runs, in order: from the first stage
        (or `start_at_stage`) to the last (or `stop_at_stage`, a number from 1 or a name). Each option is a
        per-stage value (imagen.options): None keeps the stage's configured default; `aug_level` applies to the
        super-resolution stages run, and a sequence of it has one value per such stage. Every value is checked
        here, before any sampling."""
        names = self.stages_to_run(stop_at_stage, start_at_stage)
        srs = [n for n in names if self.stages[n].config.is_super_resolution]
        known = list(self.stages)
        values = {"guidance_scale": per_stage(guidance_scale, names, "guidance_scale", known),
                  "num_steps": per_stage(num_inference_steps, names, "num_inference_steps", known),
                  "sampler": per_stage(sampler, names, "sampler", known),
                  "thresholding": per_stage(thresholding, names, "thresholding", known),
                  "dynamic_percentile": per_stage(dynamic_percentile, names, "dynamic_percentile", known),
                  "time_grid": per_stage(time_grid, names, "time_grid", known),
                  "aug_level": per_stage(aug_level, srs, "aug_level (one per super-resolution stage run)", known)}
        return {name: SamplingOptions(**{field: by_stage.get(name) for field, by_stage in values.items()}
                                      ).resolved(self.stages[name].config) for name in names}

    def stages_to_run(self, stop_at_stage: int | str | None = None, start_at_stage: str | None = None) -> list[str]:
        """The names of the stages a call runs, in cascade order."""
        names = self._stages_up_to(stop_at_stage)
        if start_at_stage is None:
            return names
        if start_at_stage not in self.stages:
            raise ValueError(f"start_at_stage {start_at_stage!r} is not a stage of this model: "
                             f"{', '.join(self.stages)}")
        if start_at_stage not in names:
            raise ValueError(f"stop_at_stage {stop_at_stage!r} ends the run before its first stage, {start_at_stage}")
        return names[names.index(start_at_stage):]

    def _stages_up_to(self, stop_at_stage: int | str | None) -> list[str]:
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

    def _sample_stage(self, name: str, embeds, mask, negative, previous, seeds, options, chunk, callback,
                      edit: StageEdit | None) -> torch.Tensor:
        stage = self.stages[name]
        # each image's generator draws the stage's noise in the same order whatever the batch: the stage seed
        # is offset so stages draw independent noise
        offset = 1_000_003 * list(self.stages).index(name)
        pieces = []
        for start in range(0, len(seeds), chunk):
            rows = slice(start, start + chunk)
            neg = None if negative is None else (negative[0][rows], negative[1][rows])
            run = stage.prepare(embeds[rows], mask[rows], _generators(seeds[rows], offset, self.device), options,
                                lowres=None if previous is None else previous[rows], negative=neg)
            pieces.append(run.run(callback=callback) if edit is None else edit.sample(name, stage, run, callback))
        return torch.cat(pieces)


def _generators(seeds: Sequence[Any], offset: int, device: torch.device) -> list:
    """One noise generator per image for the stage whose seeds are offset by `offset`: ints are seeds, other
    objects make their own (`seed.generator(offset, device)`, e.g. interpolated noise)."""
    return [s.generator(offset, device) if hasattr(s, "generator") else generators([int(s) + offset], device)[0]
            for s in seeds]


def image_seeds(seed: int | None, generator: torch.Generator | Sequence[torch.Generator] | None,
                count: int) -> list[int]:
    """One seed per image: `seed + i` (seed default 0), or drawn from `generator` (one for all, or one each)."""
    if generator is None:
        seed = check_seed(0 if seed is None else seed)
        return [seed + i for i in range(count)]
    if seed is not None:
        raise ValueError("give seed or generator, not both")
    generators_ = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    if len(generators_) not in (1, count) or not all(isinstance(g, torch.Generator) for g in generators_):
        raise ValueError(f"generator must be a torch.Generator or a list of {count} (one per image)")
    return [int(torch.randint(0, 2**31 - 1, (1,), generator=generators_[i % len(generators_)]))
            for i in range(count)]


def _prompt_list(prompts: str | Sequence[str]) -> list[str]:
    """One prompt or several, as a checked non-empty list of strings."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    return prompts


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


MAX_RESOLUTION = 4096


def check_model_size(config: RunConfig, where: Path | None = None) -> None:
    """ValueError, before anything is allocated, for a config whose U-Nets would not fit this machine's memory
    (counted on the meta device) or whose resolution is beyond any cascade (MAX_RESOLUTION px)."""
    from unets import EfficientUNet

    source = f"{where / checkpoint.CONFIG_FILE}: " if where else ""
    total = 0
    for name, stage in config.stages().items():
        if stage.resolution > MAX_RESOLUTION:
            raise ValueError(f"{source}stage {name} has resolution {stage.resolution}, above {MAX_RESOLUTION} px: the "
                             "config is damaged or not meant for this library")
        with torch.device("meta"):
            net = EfficientUNet(stage.unet, text_dim=8, lowres_cond=stage.is_super_resolution)
        total += sum(p.numel() for p in net.parameters())
    available = available_memory()
    if available is not None and 4 * total > available:
        raise ValueError(f"{source}the U-Nets have {total:,} parameters ({4 * total / 2**30:,.1f} GiB in float32), "
                         f"more than the {available / 2**30:,.1f} GiB of memory available")


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
    if not same_encoder(saved, encoder.identity):
        raise ValueError(f"{directory / checkpoint.CONFIG_FILE}: the text encoder {encoder.identity.get('name')!r} "
                         f"differs from the one this model was trained with ({saved.get('name')!r}, sha256 "
                         f"{saved['sha256'][:12]}...); load that encoder (text.name) or retrain")
