"""Frozen dataclasses for every option of a run. Stdlib only.

A `RunConfig` is a whole cascade (text encoder + up to three stages) plus the data it trains on.
Every field has a default, so a preset only states what differs; `configs.loader` checks names and
types strictly and turns the result back into JSON for run directories and saved models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Literal, get_args

# The vocabulary: every name a config, a registry or a CLI choice list accepts is defined here once.
StageName = Literal["base", "sr1", "sr2"]
SamplerName = Literal["ddpm", "ddim", "dpm++"]
ThresholdingMode = Literal["none", "static", "dynamic"]
TimeGridName = Literal["uniform", "logsnr", "karras"]
ScheduleKind = Literal["cosine", "linear"]
Prediction = Literal["eps", "v", "x0"]
LossName = Literal["l2", "l1", "huber"]
Precision = Literal["float32", "bfloat16", "float16"]
LoraTarget = Literal["attention", "text", "local"]

STAGE_NAMES: tuple[str, ...] = get_args(StageName)
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)
THRESHOLDING_MODES: tuple[str, ...] = get_args(ThresholdingMode)
TIME_GRID_NAMES: tuple[str, ...] = get_args(TimeGridName)
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)
PREDICTIONS: tuple[str, ...] = get_args(Prediction)
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
PRECISIONS: tuple[str, ...] = get_args(Precision)
LORA_TARGETS: tuple[str, ...] = get_args(LoraTarget)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class TextEncoderConfig:
    """The frozen text encoder: `embedded` (the small T5 shipped in the package), a hub name or a path."""

    name: str = "embedded"
    max_length: int = 32  # tokens; longer captions are truncated (paper: 128)
    dtype: Precision = "float32"

    def __post_init__(self):
        _check(bool(self.name), "name must not be empty (use 'embedded', a hub name or a local path)")
        _check(self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Continuous-time noise schedule, as log-SNR over t in [0, 1], clipped to [logsnr_min, logsnr_max]."""

    kind: ScheduleKind = "cosine"
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0

    def __post_init__(self):
        _check(self.logsnr_min < self.logsnr_max,
               f"logsnr_min ({self.logsnr_min}) must be below logsnr_max ({self.logsnr_max})")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the network predicts and how the loss is weighted."""

    prediction: Prediction = "eps"
    loss: LossName = "l2"
    min_snr_gamma: float = 0.0  # min-SNR-gamma weighting (Hang et al. 2023); 0 disables it
    # SR stages: diffuse the residual x - upsample(lowres) instead of x (the network adds detail to the
    # upsampled input and keeps its colours by predicting zero where there is nothing to add)
    lowres_residual: bool = False
    # standard deviation of what is diffused, for v-prediction's EDM preconditioning (1: plain v); an SR stage's
    # residual is a few hundredths, and with 1 its high-noise errors would reach the image unscaled
    sigma_data: float = 1.0

    def __post_init__(self):
        _check(self.min_snr_gamma >= 0, f"min_snr_gamma must be >= 0, got {self.min_snr_gamma}")
        _check(self.sigma_data > 0, f"sigma_data must be positive, got {self.sigma_data}")
        _check(self.sigma_data == 1.0 or (self.prediction == "v" and self.min_snr_gamma == 0),
               "sigma_data != 1 needs prediction = \"v\" and min_snr_gamma = 0 (EDM's preconditioning and weighting)")


@dataclass(frozen=True)
class UNetConfig:
    """Efficient U-Net (Imagen appendix B). Per-level tuples run from the highest resolution down."""

    channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: tuple[int, ...] = (1, 2, 4)
    self_attn: tuple[bool, ...] = (False, False, True)
    cross_attn: tuple[bool, ...] = (False, True, True)
    head_dim: int = 64
    cond_dim: int = 256  # width of the time (+ pooled text, + augmentation level) embedding
    dropout: float = 0.0
    scale_skip: bool = True  # skip connections scaled by 1/sqrt(2)
    efficient_order: bool = True  # downsample before the down-block convs, upsample after the up-block convs
    # (so level i runs at resolution / 2 ** (i + 1)); False: the classic U-Net order, level i at resolution / 2 ** i
    scale_shift: bool = True  # FiLM conditioning (scale and shift) instead of an added bias
    pooled_text: bool = True  # attention-pooled text vector added to the time embedding
    position_embedding: bool = False  # absolute pixel positions (input coordinates + attention); whole images only
    text_layernorm: bool = True
    gradient_checkpointing: bool = False

    def __post_init__(self):
        levels = len(self.channel_mults)
        _check(levels >= 1, "channel_mults needs at least one level")
        for name in ("num_res_blocks", "self_attn", "cross_attn"):
            got = len(getattr(self, name))
            _check(got == levels, f"{name} has {got} entries but channel_mults has {levels}: "
                                  "give one per level")
        _check(self.channels > 0 and self.head_dim > 0 and self.cond_dim > 0,
               "channels, head_dim and cond_dim must be positive")
        _check(all(m > 0 for m in self.channel_mults), "channel_mults must be positive")
        _check(all(n >= 0 for n in self.num_res_blocks), "num_res_blocks must be >= 0")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class SamplerConfig:
    """Default sampling settings of a stage (each can be overridden per call)."""

    name: SamplerName = "dpm++"
    num_steps: int = 25
    guidance_scale: float = 5.0
    thresholding: ThresholdingMode = "dynamic"
    dynamic_percentile: float = 0.995
    time_grid: TimeGridName = "logsnr"
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic, 1 = DDPM-like)
    order: int = 2  # DPM-Solver++ multistep order (2 or 3)

    def __post_init__(self):
        _check(self.num_steps >= 1, f"num_steps must be >= 1, got {self.num_steps}")
        _check(0.0 < self.dynamic_percentile <= 1.0,
               f"dynamic_percentile must be in (0, 1], got {self.dynamic_percentile}")
        _check(self.eta >= 0.0, f"eta must be >= 0, got {self.eta}")
        _check(self.order in (1, 2, 3), f"order must be 1, 2 or 3, got {self.order}")


@dataclass(frozen=True)
class NoiseAugConfig:
    """Noise-conditioning augmentation of the low-res input of an SR stage (Imagen section 2.5)."""

    train_max_level: float = 1.0  # training draws a ~ U(0, train_max_level)
    sample_level: float = 0.1  # fixed level at sampling (paper: 0.1-0.3 for samples, 0 for FID)

    def __post_init__(self):
        _check(0.0 <= self.train_max_level <= 1.0, "train_max_level must be in [0, 1]")
        _check(0.0 <= self.sample_level <= 1.0, "sample_level must be in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """Training one stage."""

    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 1000
    max_minutes: float = 0.0  # wall-clock budget for this stage; 0 = no budget
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: to 0 at max_steps or max_minutes, the first
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    ema_decay: float = 0.999
    ema_warmup_power: float = 0.75  # effective decay 1 - (1 + step)^-power, capped at ema_decay
    ema_update_after_step: int = 0
    caption_drop_prob: float = 0.1  # captions dropped to the null condition (classifier-free guidance)
    crop_size: int = 0  # SR stages: train on random crops of this size (0 = full resolution)
    crop_candidates: int = 1  # > 1: each crop the most detailed of this many random ones (edges over flat colour)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    compile: bool = False  # torch.compile the U-Net (pays on long runs only: bench/mfu.py --levers)
    # "fsdp": under a launch of several processes, shard weights, gradients, optimiser state and EMA over them
    # (torch FSDP2 `fully_shard`, one unit per U-Net level) and write sharded checkpoints (trainers.sharding)
    sharding: Literal["none", "fsdp"] = "none"
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank on a model given by --init-from, not the weights
    lora_alpha: float = 0.0  # LoRA scale numerator (alpha / rank); 0 = the rank
    lora_conv: bool = False  # also adapt the residual blocks' 3x3 convolutions
    # "attention": every attention projection; "text": only cross-attention's keys and values of the text
    lora_target: LoraTarget = "attention"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 0  # write a labelled sample grid every N steps; 0 = only at the end
    num_workers: int = 0
    nan_patience: int = 10  # stop after this many non-finite losses in a row

    def __post_init__(self):
        for name in ("batch_size", "grad_accum", "max_steps", "log_every", "checkpoint_every",
                     "keep_checkpoints", "nan_patience"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        _check(0.0 <= self.caption_drop_prob <= 1.0, "caption_drop_prob must be in [0, 1]")
        _check(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        _check(self.lora_rank >= 0 and self.lora_alpha >= 0, "lora_rank and lora_alpha must be >= 0")
        _check(self.crop_candidates >= 1, f"crop_candidates must be >= 1, got {self.crop_candidates}")
        for name in ("crop_size", "max_minutes", "sample_every"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0 (0: none), got {getattr(self, name)}")
        # Adafactor's factored statistics (transformers' and torch's) raise on FSDP's DTensor parameters
        _check(self.sharding == "none" or self.optimizer == "adamw",
               "sharding=fsdp needs optimizer=adamw: Adafactor does not run on sharded (DTensor) parameters")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the cascade: a U-Net at `resolution`, conditioned on a `lowres_resolution` image
    when it is a super-resolution stage (lowres_resolution 0 means the base stage)."""

    resolution: int = 64
    lowres_resolution: int = 0
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    noise_aug: NoiseAugConfig = field(default_factory=NoiseAugConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def is_super_resolution(self) -> bool:
        return self.lowres_resolution > 0

    def __post_init__(self):
        # the U-Net halves the resolution once per level, or once fewer in the classic (non-efficient) order
        levels = len(self.unet.channel_mults)
        factor = 2 ** (levels if self.unet.efficient_order else levels - 1)
        _check(self.resolution % factor == 0,
               f"resolution {self.resolution} must be divisible by {factor} (the U-Net downsamples {levels} levels"
               f"{'' if self.unet.efficient_order else ' in the classic order'})")
        _check(0 <= self.lowres_resolution < self.resolution,
               f"lowres_resolution ({self.lowres_resolution}) must be below resolution ({self.resolution})")
        _check(self.lowres_resolution > 0 or not self.objective.lowres_residual,
               "objective.lowres_residual needs a super-resolution stage (lowres_resolution > 0)")
        crop = self.train.crop_size
        _check(crop == 0 or (crop <= self.resolution and crop % factor == 0),
               f"train.crop_size {crop} must be <= resolution {self.resolution} and divisible by {factor}")
        _check(crop == 0 or not any(self.unet.self_attn),
               "train.crop_size needs a stage without self-attention (set unet.self_attn all false), "
               "so the net trained on crops runs at full size")
        _check(crop == 0 or not self.unet.position_embedding,
               "train.crop_size needs unet.position_embedding false: absolute positions of a crop are not "
               "those of the full image")


@dataclass(frozen=True)
class DataConfig:
    """Training data: `shapes` (procedural, offline), an image folder with same-name .txt captions,
    a .jsonl/.csv manifest, or webdataset shards (`path/shard-{000..009}.tar`)."""

    source: str = "shapes"
    shapes_seed: int = 0
    two_object_prob: float = 1 / 3
    # shapes: each object's centre moved by up to this fraction of the side from its cell's centre (captions
    # unchanged), so shapes are learnt as drawings that go anywhere, not one template per cell; 0 = cell centres
    position_jitter: float = 0.0
    resize: Literal["center_crop", "random_crop", "stretch"] = "center_crop"
    cache_text: bool = True  # precompute caption embeddings once, on disk
    # prior preservation (DreamBooth) when fine-tuning: this share of the examples comes from `prior_source`
    # (the original model's data, e.g. shapes) so that what the model knew is not forgotten; 0 = off
    prior_source: str = ""
    prior_share: float = 0.0
    # loss masks (an image's `NAME-masklabel.png`, white = the subject): the loss weight of the pixels a mask
    # leaves black against 1 on the subject, so that a small subject is not drowned by its background
    unmasked_weight: float = 0.05

    def __post_init__(self):
        _check(bool(self.source), "source must not be empty (use 'shapes' or a path)")
        _check(0.0 <= self.two_object_prob <= 1.0, "two_object_prob must be in [0, 1]")
        _check(0.0 <= self.position_jitter <= 1 / 6,
               f"position_jitter must be in [0, 1/6] (a centre stays in its cell), got {self.position_jitter}")
        _check(0.0 <= self.prior_share < 1.0, f"prior_share must be in [0, 1), got {self.prior_share}")
        _check(self.prior_share == 0.0 or bool(self.prior_source), "prior_share > 0 needs a prior_source")
        _check(0.0 < self.unmasked_weight <= 1.0, f"unmasked_weight must be in (0, 1], got {self.unmasked_weight}")


@dataclass(frozen=True)
class RunConfig:
    """A cascade (text encoder + base + optional SR stages) and the data it trains on."""

    name: str = "run"
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    base: StageConfig | None = None
    sr1: StageConfig | None = None
    sr2: StageConfig | None = None

    def stages(self) -> dict[str, StageConfig]:
        """The stages present, in cascade order."""
        return {n: getattr(self, n) for n in STAGE_NAMES if getattr(self, n) is not None}

    def architecture_change(self, other: RunConfig) -> str | None:
        """The first setting (`key: old -> new`) in which `other` builds or trains another model than this config:
        the text encoder, or a stage both have in its resolutions, U-Net (dropout and gradient checkpointing
        aside: they change no weight), noise schedule or objective. None when a run of this config can go on
        under `other`."""
        if self.text.name != other.text.name:
            return f"text.name: {self.text.name!r} -> {other.text.name!r}"
        for name, stage in self.stages().items():
            if name not in other.stages():
                continue
            for part in ("resolution", "lowres_resolution", "unet", "schedule", "objective"):
                change = _first_change(getattr(stage, part), getattr(other.stages()[name], part), f"{name}.{part}")
                if change:
                    return change
        return None

    def __post_init__(self):
        stages = self.stages()
        _check(bool(stages), "the config defines no stage: add a [base], [sr1] or [sr2] table")
        previous = None
        for name, stage in stages.items():
            if previous is not None:
                _check(stage.lowres_resolution == previous.resolution,
                       f"{name}.lowres_resolution ({stage.lowres_resolution}) must equal the previous "
                       f"stage's resolution ({previous.resolution})")
            previous = stage
        if self.base is not None:
            _check(self.base.lowres_resolution == 0, "base.lowres_resolution must be 0 (the base stage)")
        for name in ("sr1", "sr2"):
            stage = getattr(self, name)
            _check(stage is None or stage.is_super_resolution,
                   f"{name}.lowres_resolution must be set (an SR stage upsamples a low-res image)")


_WEIGHTLESS = ("dropout", "gradient_checkpointing")  # U-Net settings that change how it trains, not its weights


def _first_change(old, new, key: str) -> str | None:
    if is_dataclass(old):
        changes = (_first_change(getattr(old, f.name), getattr(new, f.name), f"{key}.{f.name}")
                   for f in fields(old) if f.name not in _WEIGHTLESS)
        return next((c for c in changes if c), None)
    return None if old == new else f"{key}: {old!r} -> {new!r}"
