"""Run configuration: frozen dataclasses (`schema`), strict loading and presets (`loader`). Stdlib only."""

from .loader import from_dict, from_json, load_config, preset_names, to_dict, to_json
from .schema import (
    SAMPLER_NAMES,
    STAGE_NAMES,
    THRESHOLDING_MODES,
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
    "SAMPLER_NAMES", "STAGE_NAMES", "THRESHOLDING_MODES", "DataConfig", "NoiseAugConfig", "ObjectiveConfig",
    "RunConfig", "SamplerConfig", "ScheduleConfig", "StageConfig", "TextEncoderConfig", "TrainConfig",
    "UNetConfig", "from_dict", "from_json", "load_config", "preset_names", "to_dict", "to_json",
]
