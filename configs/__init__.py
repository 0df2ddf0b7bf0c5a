"""Run configuration: frozen dataclasses (`schema`), strict loading and presets (`loader`). Stdlib only."""

from .loader import from_dict, from_json, load_config, preset_names, to_dict, to_json
from .schema import (
    LORA_TARGETS,
    LOSS_NAMES,
    PRECISIONS,
    PREDICTIONS,
    SAMPLER_NAMES,
    SCHEDULE_KINDS,
    STAGE_NAMES,
    THRESHOLDING_MODES,
    TIME_GRID_NAMES,
    DataConfig,
    NoiseAugConfig,
    ObjectiveConfig,
    RunConfig,
    SamplerConfig,
    ScheduleConfig,
    StageConfig,
    TextEncoderConfig,
    TrainConfig,
    UNetConfig,
)

__all__ = [
    "LORA_TARGETS", "LOSS_NAMES", "PRECISIONS", "PREDICTIONS", "SAMPLER_NAMES", "SCHEDULE_KINDS", "STAGE_NAMES",
    "THRESHOLDING_MODES", "TIME_GRID_NAMES", "DataConfig", "NoiseAugConfig", "ObjectiveConfig",
    "RunConfig", "SamplerConfig", "ScheduleConfig", "StageConfig", "TextEncoderConfig", "TrainConfig",
    "UNetConfig", "from_dict", "from_json", "load_config", "preset_names", "to_dict", "to_json",
]
