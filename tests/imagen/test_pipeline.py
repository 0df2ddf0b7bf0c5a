"""The cascade as a library object (imagen.pipeline.Imagen) on the tiny random-weight cascade of conftest."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from imagen.pipeline import resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a small red circle at the top left on a blue background", "a large green square",
           "two triangles"]
ATOL = 1e-4  # batched and unbatched convolutions may round differently


def test_generate_runs_every_stage_in_order_with_its_resolution(tiny_pipe):
    out = tiny_pipe.generate(PROMPTS[:2], seed=0, progress=False)
    assert list(out) == ["base", "sr1", "sr2"]
    for name, size in (("base", 16), ("sr1", 32), ("sr2", 64)):
        assert out[name].shape == (2, 3, size, size)
        assert out[name].dtype == torch.float32
        assert float(out[name].abs().max()) <= 1.0
    assert not torch.equal(out["sr2"][0], out["sr2"][1])


def test_each_stage_encodes_its_text_once_per_run(tiny_pipe):
    """The text conditioning and every cross-attention layer's keys and values are computed before a stage's
    first step and reused by every step (Denoiser.bind)."""
    calls = {name: {"net": 0, "text": 0, "kv": 0} for name in tiny_pipe.stages}
    hooks = []
    for name, stage in tiny_pipe.stages.items():
        count = calls[name]
        hooks += [stage.net.register_forward_hook(lambda *_, c=count: c.__setitem__("net", c["net"] + 1)),
                  stage.net.text.register_forward_hook(lambda *_, c=count: c.__setitem__("text", c["text"] + 1))]
        hooks += [reader.kv.register_forward_hook(lambda *_, c=count: c.__setitem__("kv", c["kv"] + 1))
                  for reader in stage.net.text_readers]
    try:
        tiny_pipe.generate([PROMPTS[0]], num_inference_steps=[4, 2, 2], seed=0, progress=False)
    finally:
        for hook in hooks:
            hook.remove()
    for name, stage in tiny_pipe.stages.items():
        assert calls[name]["net"] == (4 if name == "base" else 2)
        assert calls[name]["text"] == 1 and calls[name]["kv"] == len(stage.net.text_readers) > 0


def test_an_image_does_not_depend_on_its_batch_or_chunking(tiny_pipe):
    batch = tiny_pipe.generate(PROMPTS, seed=7, progress=False)
    chunked = tiny_pipe.generate(PROMPTS, seed=7, max_batch_size=2, progress=False)
    for i, prompt in enumerate(PROMPTS):
        alone = tiny_pipe.generate([prompt], seed=7 + i, progress=False)
        for name in batch:
            torch.testing.assert_close(alone[name][0], batch[name][i], atol=ATOL, rtol=0)
            torch.testing.assert_close(chunked[name][i], batch[name][i], atol=ATOL, rtol=0)


def test_num_images_per_prompt_gives_consecutive_seeds(tiny_pipe):
    many = tiny_pipe.generate([PROMPTS[0]], seed=3, num_images_per_prompt=2, progress=False, stop_at_stage=2)
    for k in range(2):
        one = tiny_pipe.generate([PROMPTS[0]], seed=3 + k, progress=False, stop_at_stage=2)
        torch.testing.assert_close(one["sr1"][0], many["sr1"][k], atol=ATOL, rtol=0)
    assert not torch.allclose(many["sr1"][0], many["sr1"][1])


def test_same_seed_same_images_other_seed_other_images(tiny_pipe):
    a = tiny_pipe.generate([PROMPTS[0]], seed=1, progress=False, stop_at_stage=1)["base"]
    b = tiny_pipe.generate([PROMPTS[0]], seed=1, progress=False, stop_at_stage=1)["base"]
    c = tiny_pipe.generate([PROMPTS[0]], seed=2, progress=False, stop_at_stage=1)["base"]
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_stop_at_stage_by_number_or_name_returns_the_same_early_images(tiny_pipe):
    full = tiny_pipe.generate([PROMPTS[0]], seed=4, progress=False)
    by_number = tiny_pipe.generate([PROMPTS[0]], seed=4, stop_at_stage=2, progress=False)
    by_name = tiny_pipe.generate([PROMPTS[0]], seed=4, stop_at_stage="base", progress=False)
    assert list(by_number) == ["base", "sr1"] and list(by_name) == ["base"]
    torch.testing.assert_close(by_number["sr1"], full["sr1"])
    torch.testing.assert_close(by_name["base"], full["base"])
    for bad in (0, 4, "sr3"):
        with pytest.raises(ValueError, match="stop_at_stage"):
            tiny_pipe.generate([PROMPTS[0]], stop_at_stage=bad, progress=False)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_thresholding_keeps_every_x0_prediction_in_bounds(tiny_pipe, mode):
    stage = tiny_pipe.stages["base"]
    embeds, mask = tiny_pipe.encode_prompts(PROMPTS[:2])
    seen = {}

    def record(mode_):
        def callback(i, t, x, x0):
            seen.setdefault(mode_, []).append(float(x0.abs().max()))
        return callback

    from imagen.options import SamplingOptions

    for mode_ in (mode, "none"):
        options = SamplingOptions(guidance_scale=20.0, num_steps=3, thresholding=mode_)
        out = stage.sample(embeds, mask, torch.Generator().manual_seed(0), options, callback=record(mode_))
        assert float(out.abs().max()) <= 1.0
    assert max(seen[mode]) <= 1.0 + 1e-6
    assert max(seen["none"]) > 1.0  # guidance 20 does push x0 out of range: thresholding had work to do


def test_guidance_scale_changes_the_images_and_is_per_stage(tiny_pipe):
    kwargs = {"seed": 0, "progress": False, "stop_at_stage": 2}
    one = tiny_pipe.generate([PROMPTS[0]], guidance_scale=1.0, **kwargs)
    five = tiny_pipe.generate([PROMPTS[0]], guidance_scale=5.0, **kwargs)
    assert (one["base"] - five["base"]).abs().max() > 1e-2
    # per stage: only sr1's scale differs, so the base images are identical and the sr1 ones are not
    a = tiny_pipe.generate([PROMPTS[0]], guidance_scale=[5.0, 1.0], **kwargs)
    b = tiny_pipe.generate([PROMPTS[0]], guidance_scale=[5.0, 8.0], **kwargs)
    assert torch.equal(a["base"], b["base"]) and torch.equal(a["base"], five["base"])
    assert (a["sr1"] - b["sr1"]).abs().max() > 1e-3  # SR output scaled by sigma_data (shapes-tiny: 0.04)


def test_negative_prompt_replaces_the_null_condition(tiny_pipe):
    kwargs = {"seed": 0, "progress": False, "stop_at_stage": 1}
    plain = tiny_pipe.generate([PROMPTS[0]], guidance_scale=5.0, **kwargs)["base"]
    negative = tiny_pipe.generate([PROMPTS[0]], guidance_scale=5.0, negative_prompt="red", **kwargs)["base"]
    assert (plain - negative).abs().max() > 1e-2
    # guidance 1 is the conditional model alone: the negative prompt plays no part
    a = tiny_pipe.generate([PROMPTS[0]], guidance_scale=1.0, **kwargs)["base"]
    b = tiny_pipe.generate([PROMPTS[0]], guidance_scale=1.0, negative_prompt="red", **kwargs)["base"]
    assert torch.equal(a, b)
    # one negative prompt per prompt, or one for all
    two = tiny_pipe.generate(PROMPTS[:2], guidance_scale=5.0, negative_prompt=["red", "blue"], **kwargs)["base"]
    torch.testing.assert_close(two[0], negative[0], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="negative prompts"):
        tiny_pipe.generate(PROMPTS[:3], negative_prompt=["red", "blue"], **kwargs)
    # an empty negative prompt is the learned null condition itself (diffusers' negative_prompt="" idiom)
    empty = tiny_pipe.generate([PROMPTS[0]], guidance_scale=5.0, negative_prompt="", **kwargs)["base"]
    torch.testing.assert_close(empty, plain, atol=ATOL, rtol=0)


def test_aug_level_is_per_sr_stage_and_leaves_the_base_alone(tiny_pipe):
    kwargs = {"seed": 0, "progress": False}
    low = tiny_pipe.generate([PROMPTS[0]], aug_level=[0.0, 0.1], **kwargs)
    high = tiny_pipe.generate([PROMPTS[0]], aug_level=[0.9, 0.1], **kwargs)
    assert torch.equal(low["base"], high["base"])
    assert (low["sr1"] - high["sr1"]).abs().max() > 1e-2
    options = tiny_pipe.sampling_options(aug_level=[0.0, 0.3])
    assert (options["base"].aug_level, options["sr1"].aug_level, options["sr2"].aug_level) == (None, 0.0, 0.3)
    with pytest.raises(ValueError, match="one per super-resolution stage run"):
        tiny_pipe.sampling_options(aug_level=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="augmentation level"):
        tiny_pipe.sampling_options(aug_level=1.5)


def test_sampling_options_fill_defaults_and_take_one_value_per_stage_run_or_a_mapping(tiny_pipe):
    options = tiny_pipe.sampling_options()
    config = tiny_pipe.config
    assert options["base"].num_steps == config.base.sampler.num_steps
    assert options["sr1"].guidance_scale == config.sr1.sampler.guidance_scale
    assert options["sr2"].aug_level == config.sr2.noise_aug.sample_level
    per_stage = tiny_pipe.sampling_options(num_inference_steps=[4, 3, 2], sampler=["ddpm", "ddim", "dpm++"])
    assert [o.num_steps for o in per_stage.values()] == [4, 3, 2]
    assert [o.sampler for o in per_stage.values()] == ["ddpm", "ddim", "dpm++"]
    run_two = tiny_pipe.sampling_options(num_inference_steps=[4, 3], stop_at_stage=2)
    assert list(run_two) == ["base", "sr1"] and run_two["sr1"].num_steps == 3
    # a list counts the stages run, never the model's: three values for a two-stage run is an error
    with pytest.raises(ValueError, match="num_inference_steps has 3 values but this call runs 2 stage"):
        tiny_pipe.sampling_options(num_inference_steps=[4, 3, 2], stop_at_stage=2)
    with pytest.raises(ValueError, match="num_inference_steps has 2 values but this call runs 3 stage"):
        tiny_pipe.sampling_options(num_inference_steps=[4, 3])
    mapped = tiny_pipe.sampling_options(num_inference_steps={"sr1": 5, "sr2": 6}, stop_at_stage=2)
    assert (mapped["base"].num_steps, mapped["sr1"].num_steps) == (config.base.sampler.num_steps, 5)
    with pytest.raises(ValueError, match="'sr3' is not a stage of this run"):
        tiny_pipe.sampling_options(guidance_scale={"sr3": 2.0})
    upscale = tiny_pipe.sampling_options(guidance_scale=[2.0, 3.0], start_at_stage="sr1")
    assert list(upscale) == ["sr1", "sr2"] and upscale["sr2"].guidance_scale == 3.0


@pytest.mark.parametrize("option, good, bad, match", [
    ("sampler", "ddpm", "euler", "unknown sampler 'euler'"),
    ("thresholding", "static", "soft", "unknown thresholding"),
    ("time_grid", "uniform", "cosine", "unknown time grid"),
    ("num_inference_steps", 2, 0, "steps"),
    ("num_inference_steps", 2, 10**9, "from 1 to 10,000"),  # a grid of 10**9 times filled the memory
    ("dynamic_percentile", 0.9, 1.5, "percentile"),
    ("guidance_scale", 1.0, float("nan"), "guidance scale"),
])
def test_bad_options_fail_before_any_sampling(tiny_pipe, option, good, bad, match, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before checking the options")

    for stage in tiny_pipe.stages.values():
        monkeypatch.setattr(stage, "sample", no_sampling)
    # a bad value for the last stage only fails before the base stage runs
    with pytest.raises(ValueError, match=match):
        tiny_pipe.generate([PROMPTS[0]], **{option: [good, good, bad]}, progress=False)


def test_call_returns_an_output_with_images_in_the_format_asked(tiny_pipe):
    import json

    import numpy as np

    out = tiny_pipe(prompt=PROMPTS[:2], seed=0, stop_at_stage=2, progress=False)
    assert [type(i) for i in out.images] == [Image.Image, Image.Image] and out.stage_images is None
    assert out.images[0].size == (32, 32) and out.images[0].mode == "RGB" and out.seeds == [0, 1]
    settings = json.loads(out.images[1].info["settings"])
    assert out.images[1].info["prompt"] == PROMPTS[1] == settings["prompt"]
    assert settings["seed"] == 1 and settings["stage"] == "sr1" and list(settings["stages"]) == ["base", "sr1"]
    assert settings == out.settings[1]
    tensors = tiny_pipe.generate(PROMPTS[:2], seed=0, stop_at_stage=2, progress=False)
    pt = tiny_pipe(PROMPTS[:2], seed=0, stop_at_stage=2, progress=False, output_type="pt").images
    torch.testing.assert_close(pt, (tensors["sr1"] + 1) / 2)
    array = tiny_pipe(PROMPTS[:2], seed=0, stop_at_stage=2, progress=False, output_type="np").images
    assert array.shape == (2, 32, 32, 3) and array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 1
    expected = ((tensors["sr1"][0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(out.images[0]), expected)
    both = tiny_pipe(PROMPTS[:1], stop_at_stage=2, progress=False, return_all_stages=True)
    assert [im[0].size for im in both.stage_images.values()] == [(16, 16), (32, 32)]
    with pytest.raises(ValueError, match="output_type must be one of pil, np, pt"):
        tiny_pipe(PROMPTS[:1], output_type="tensor", progress=False)


def test_diffusers_arguments_generator_and_num_inference_steps(tiny_pipe):
    kwargs = {"stop_at_stage": 1, "progress": False, "output_type": "pt"}
    a = tiny_pipe(prompt=PROMPTS[0], num_inference_steps=2, generator=torch.Generator().manual_seed(5), **kwargs)
    b = tiny_pipe(prompt=PROMPTS[0], num_inference_steps=2, generator=torch.Generator().manual_seed(5), **kwargs)
    assert torch.equal(a.images, b.images)
    again = tiny_pipe(prompt=PROMPTS[0], num_inference_steps=2, seed=a.seeds[0], **kwargs)
    assert torch.equal(a.images, again.images)  # the seed drawn from the generator reproduces the image
    two = tiny_pipe(prompt=PROMPTS[0], num_images_per_prompt=2, num_inference_steps=2,
                    generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)], **kwargs)
    assert two.seeds[0] == a.seeds[0] and two.seeds[1] != a.seeds[0]
    with pytest.raises(ValueError, match="seed or generator, not both"):
        tiny_pipe(prompt=PROMPTS[0], seed=1, generator=torch.Generator(), **kwargs)


@pytest.mark.parametrize("prompts", [[], [1, 2]])
def test_bad_prompts(tiny_pipe, prompts):
    with pytest.raises(ValueError, match="prompts"):
        tiny_pipe.generate(prompts, progress=False)


def test_resolve_device():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None:
        mps = getattr(torch.backends, "mps", None)
        expected = "mps" if mps is not None and mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_upscale_runs_the_sr_stages_on_a_given_image_as_the_cascade_does(tiny_pipe):
    full = tiny_pipe.generate([PROMPTS[0]], seed=3, progress=False)
    up = tiny_pipe.upscale(PROMPTS[0], full["base"][0], seed=3, output_type="pt", progress=False).images
    torch.testing.assert_close(up, (full["sr2"] + 1) / 2, atol=ATOL, rtol=0)  # same noise: the same final image
    first = tiny_pipe.upscale(PROMPTS[0], full["base"][0], seed=3, stop_at_stage="sr1", output_type="pt",
                              progress=False).images
    torch.testing.assert_close(first, (full["sr1"] + 1) / 2, atol=ATOL, rtol=0)


def test_upscale_takes_per_sr_stage_options_and_resizes_other_sizes_with_a_warning(tiny_pipe):
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    with pytest.warns(UserWarning, match="resizing the 40x40 image to 16x16"):
        out = tiny_pipe.upscale([PROMPTS[0], PROMPTS[1]], image, guidance_scale=[1.0, 2.0], progress=False)
    assert [im.size for im in out.images] == [(64, 64), (64, 64)]
    with pytest.raises(ValueError, match="ends the run before its first stage"):
        tiny_pipe.upscale(PROMPTS[0], image, stop_at_stage=1, progress=False)
    with pytest.raises(ValueError, match="2 images for 1 images to make"):
        tiny_pipe.upscale(PROMPTS[0], [image, image], progress=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_sample_in_float32_between_calls(tiny_model_dir, dtype):
    from imagen import Imagen

    full = Imagen.from_pretrained(tiny_model_dir)
    half = Imagen.from_pretrained(tiny_model_dir, dtype=dtype)
    assert all(p.dtype == dtype for p in half.stages.parameters())
    a = full.generate([PROMPTS[0]], seed=0, progress=False)
    b = half.generate([PROMPTS[0]], seed=0, progress=False)
    for name in a:
        assert b[name].dtype == torch.float32
        assert (a[name] - b[name]).abs().mean() < 0.05


def test_compile_keeps_the_weights_names_and_the_images(tiny_model_dir):
    from imagen import Imagen

    plain = Imagen.from_pretrained(tiny_model_dir)
    compiled = Imagen.from_pretrained(tiny_model_dir).compile(backend="eager")  # the wiring, without a C++ build
    assert list(compiled.stages["base"].net.state_dict()) == list(plain.stages["base"].net.state_dict())
    a = plain.generate([PROMPTS[0]], seed=2, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = compiled.generate([PROMPTS[0]], seed=2, progress=False)
    assert not [w for w in caught if "lru_cache" in str(w.message)]  # the position features traced quietly
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=ATOL, rtol=0)
    # compiled, every prompt's text is read at the encoder's max_length (masked padding: the same images)
    assert compiled.encode_prompts([PROMPTS[0]])[1].shape[1] == compiled.text_encoder.max_length > \
        plain.encode_prompts([PROMPTS[0]])[1].shape[1]


def test_a_compiled_pipe_moved_to_another_dtype_is_refused(tiny_model_dir):
    from imagen import Imagen

    pipe = Imagen.from_pretrained(tiny_model_dir).compile("base", backend="eager")
    assert pipe.compiled == ["base"]
    pipe.to(torch.bfloat16)  # the frozen float32 weights would run on (NaN images before)
    with pytest.raises(ValueError, match="compiled on cpu in torch.float32, not cpu in torch.bfloat16"):
        pipe.generate([PROMPTS[0]], progress=False)


def test_numpy_and_torch_scalars_are_numbers_and_unknown_arguments_are_named(tiny_pipe):
    import numpy as np

    options = tiny_pipe.sampling_options(num_inference_steps=np.int64(3), guidance_scale=torch.tensor(2.5))
    assert {o.num_steps for o in options.values()} == {3} and {o.guidance_scale for o in options.values()} == {2.5}
    with pytest.raises(TypeError, match="unexpected argument 'height'; the per-stage sampling arguments are"):
        tiny_pipe.generate([PROMPTS[0]], height=128, progress=False)
    with pytest.raises(ValueError, match="max_batch_size must be an integer >= 1, got 1.5"):
        tiny_pipe.generate([PROMPTS[0]], max_batch_size=1.5, progress=False)


@pytest.mark.parametrize(("seed", "match"), [(2**64, "out of range"), (1.5, "must be an integer")])
def test_seeds_out_of_range_are_refused_before_sampling(tiny_pipe, seed, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipe.generate([PROMPTS[0]], seed=seed, progress=False)


def test_save_pretrained_refuses_a_dtype_that_does_not_load(tiny_pipe, tmp_path):
    for dtype, match in ((torch.int8, "must be float32, bfloat16 or float16"), ("fp16", "dtype must be one of")):
        with pytest.raises(ValueError, match=match):
            tiny_pipe.save_pretrained(tmp_path / "m", dtype=dtype)
    assert not (tmp_path / "m").exists()
    tiny_pipe.save_pretrained(tmp_path / "m", dtype="bfloat16")
    assert (tmp_path / "m" / "config.json").is_file()


def test_every_compiled_stage_keeps_a_graph_of_fixed_shapes(tiny_model_dir, graph_recorder):
    """The stages' U-Nets share their forward code: the second resolution seen must not make torch recompile
    that code with symbolic sizes (slower, and at 1024 px inductor failed to build it)."""
    from imagen import Imagen

    pipe = Imagen.from_pretrained(tiny_model_dir).compile(backend=graph_recorder)
    pipe.generate([PROMPTS[0]], seed=2, progress=False)
    pipe.generate([PROMPTS[1]], seed=2, progress=False)  # another prompt length: the text is padded alike
    assert graph_recorder.symbolic == [False, False, False]  # one graph per stage (16, 32, 64 px), every size fixed


def test_compiling_freezes_the_weights_in_and_keeps_the_images(tiny_model_dir, one_thread):
    from imagen import Imagen

    plain = Imagen.from_pretrained(tiny_model_dir)
    compiled = Imagen.from_pretrained(tiny_model_dir).compile(["base"])  # inductor, weights frozen in
    assert compiled.compiled == ["base"]
    a = plain.generate([PROMPTS[0]], seed=2, progress=False, stop_at_stage="base")
    b = compiled.generate([PROMPTS[0]], seed=2, progress=False, stop_at_stage="base")
    torch.testing.assert_close(a["base"], b["base"], atol=1e-4, rtol=0)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled.generate(["a red circle"], seed=2, progress=False, stop_at_stage="base")  # fewer tokens: no recompile
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    with pytest.raises(ValueError, match="load LoRA adapters before compile"):
        compiled.load_lora(tiny_model_dir)
    with pytest.raises(ValueError, match="no stage 'sr3' to compile; this model's stages: base, sr1, sr2"):
        plain.compile(["sr3"])
