"""imagen.text: T5 loading (local dir, HF cache, embedded), equality with transformers, masks, padding,
fail-fast errors, and the shipped embedded encoder (offline, fast, byte fallback, reproducible build)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from configs.schema import TextEncoderConfig
from imagen.shapes import training_scene
from imagen.text import (
    EMBEDDED_DIR,
    T5TextEncoder,
    TextEncoder,
    fingerprint,
    load_text_encoder,
    resolve_text_encoder,
)

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = ["a small red circle at the top left on a blue background",
            "a large green square at the center and a small white triangle at the bottom right on a black background",
            "red", ""]


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory) -> Path:
    """A tiny random T5 encoder + the embedded tokenizer, saved with save_pretrained like any T5 checkpoint."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    directory = tmp_path_factory.mktemp("tiny-t5")
    torch.manual_seed(0)
    config = T5Config(vocab_size=310, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(EMBEDDED_DIR).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny(tiny_t5_dir) -> T5TextEncoder:
    return T5TextEncoder.from_pretrained(str(tiny_t5_dir), max_length=16)


@pytest.fixture(scope="module")
def embedded() -> T5TextEncoder:
    return load_text_encoder(TextEncoderConfig())


def test_outputs_equal_calling_transformers_directly(tiny, tiny_t5_dir):
    from transformers import AutoTokenizer, T5EncoderModel

    model = T5EncoderModel.from_pretrained(tiny_t5_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir)
    batch = tokenizer(CAPTIONS, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
    embeds, mask = tiny.encode(CAPTIONS)
    assert embeds.shape == (4, 16, 32) and embeds.dtype == torch.float32
    real = batch["attention_mask"].bool()
    real[3] = False  # the empty caption: no token (the null condition)
    assert torch.equal(mask, real)
    assert torch.equal(embeds[mask], expected[mask])
    assert torch.equal(embeds[~mask], torch.zeros_like(embeds[~mask]))


def test_mask_counts_tokens_and_eos(tiny):
    embeds, mask = tiny.encode(CAPTIONS)
    ids, _ = tiny.tokenize(CAPTIONS)
    lengths = [len(tiny.tokenizer(c)["input_ids"]) for c in CAPTIONS]
    assert lengths[3] == 1  # the empty caption tokenizes to </s> alone ...
    assert mask.sum(1).tolist() == [0 if i == 3 else min(n, 16) for i, n in enumerate(lengths)]  # ... and has none
    assert not embeds[3].any()
    for row, n in zip(mask, mask.sum(1), strict=True):  # real tokens first, then padding
        assert row[:n].all() and not row[n:].any()
    assert all(int(ids[i, n - 1]) == 1 for i, n in enumerate(mask.sum(1)) if n)  # every caption ends with </s>


def test_pads_to_longest_caption_not_max_length(tiny):
    embeds, mask = tiny.encode(["red", "blue"])
    assert embeds.shape[1] == mask.shape[1] == 2  # "▁red </s>"


def test_padding_invariance(tiny, embedded):
    for encoder in (tiny, embedded):
        alone, alone_mask = encoder.encode([CAPTIONS[0]])
        batched, batched_mask = encoder.encode([CAPTIONS[0], CAPTIONS[1]])
        n = int(alone_mask.sum())
        assert batched.shape[1] > n and int(batched_mask[0].sum()) == n
        torch.testing.assert_close(batched[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        assert not batched[0, n:].any()


def test_truncation_keeps_eos_or_rejects(tiny_t5_dir):
    long = " ".join(["a small red circle"] * 10)
    truncating = T5TextEncoder.from_pretrained(str(tiny_t5_dir), max_length=6)
    ids, mask = truncating.tokenize([long, "red"])
    assert ids.shape == (2, 6) and int(ids[0, -1]) == 1
    strict = T5TextEncoder(truncating.model, truncating.tokenizer, identity={"name": "x"}, max_length=6,
                           truncation=False)
    strict.encode(["a red circle"])
    with pytest.raises(ValueError, match="over max_length 6"):
        strict.encode(["red", long])


def test_frozen_and_no_grad(tiny):
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    embeds, _ = tiny.encode(["red"])
    assert not embeds.requires_grad and not embeds.is_inference()  # usable as input to trained U-Nets


def test_dtype_option(tiny_t5_dir):
    encoder = T5TextEncoder.from_pretrained(str(tiny_t5_dir), dtype="bfloat16", device="cpu")
    embeds, _ = encoder.encode(["a red circle"])
    assert embeds.dtype == torch.bfloat16 and encoder.identity["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        T5TextEncoder.from_pretrained(str(tiny_t5_dir), dtype="float64")


def test_rejects_a_bare_string(tiny):
    with pytest.raises(TypeError, match="list of strings"):
        tiny.encode("a red circle")
    embeds, mask = tiny.encode([])
    assert embeds.shape == (0, 0, 32) and mask.shape == (0, 0)


def test_protocol_and_identity(tiny, tiny_t5_dir, tmp_path):
    assert isinstance(tiny, TextEncoder)
    identity = tiny.identity
    assert identity["name"] == str(tiny_t5_dir) and identity["max_length"] == 16 and identity["embed_dim"] == 32
    assert identity["sha256"] == fingerprint(tiny_t5_dir)
    copy = Path(shutil.copytree(tiny_t5_dir, tmp_path / "copy"))
    assert fingerprint(copy) == identity["sha256"]  # content, not location
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "layer_norm_epsilon": 1e-5}))
    assert fingerprint(copy) != identity["sha256"]
    shutil.copy(tiny_t5_dir / "config.json", copy / "config.json")
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert fingerprint(copy) != identity["sha256"]


@pytest.mark.parametrize("name, message", [
    ("google/t5-v1_1-xxl-not-cached", "not in the Hugging Face cache"),
    ("no-such-model", "hf download no-such-model"),
    ("./missing/t5", "no such directory"),
    ("/nonexistent/dir/t5", "no such directory"),
    ("not a name", "not a valid hub name"),
])
def test_bad_name_fails_fast_with_one_line(name, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as error:
        T5TextEncoder.from_pretrained(name)
    assert time.perf_counter() - start < 2.0
    assert "\n" not in str(error.value)


def test_bad_name_fails_fast_without_offline_mode(tmp_path):
    """Without HF_HUB_OFFLINE a plain transformers from_pretrained retries for ~23 s here; ours must not
    (and fails before even importing transformers)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path)
    code = ("import time; from imagen.text import T5TextEncoder\nstart = time.perf_counter()\n"
            "try:\n    T5TextEncoder.from_pretrained('google/t5-v1_1-xxl')\nexcept ValueError as e:\n"
            "    print(round(time.perf_counter() - start, 3), e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    seconds, message = out.split(" ", 1)
    assert float(seconds) < 2.0 and "hf download google/t5-v1_1-xxl" in message and str(tmp_path) in message


def test_unusable_directories(tmp_path, tiny_t5_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        resolve_text_encoder(str(tmp_path / "empty"))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a T5"):
        T5TextEncoder.from_pretrained(str(bert))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_t5_dir / "config.json", partial / "config.json")
    with pytest.raises(ValueError, match="incomplete or unreadable"):
        T5TextEncoder.from_pretrained(str(partial))


def test_hub_name_loads_from_the_hf_cache_offline(tiny_t5_dir, tmp_path, monkeypatch):
    """A hub name resolves to its snapshot in the HF cache layout, and loads like a local directory."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny-t5"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_t5_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_text_encoder("someone/tiny-t5") == snapshot
    encoder = T5TextEncoder.from_pretrained("someone/tiny-t5", max_length=16)
    assert encoder.identity["name"] == "someone/tiny-t5" and encoder.identity["sha256"] == fingerprint(tiny_t5_dir)


def test_sentencepiece_only_directory_like_t5_v1_1_xxl(tmp_path):
    """google/t5-v1_1-xxl ships spiece.model and a T5Tokenizer config, no tokenizer.json: that loads too."""
    import sentencepiece as spm

    for name in ("config.json", "model.safetensors", "spiece.model"):
        shutil.copy(EMBEDDED_DIR / name, tmp_path / name)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "eos_token": "</s>", "pad_token": "<pad>",
         "unk_token": "<unk>", "model_max_length": 512}))
    encoder = T5TextEncoder.from_pretrained(str(tmp_path))
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "spiece.model"))
    ids, mask = encoder.tokenize(CAPTIONS[:2])
    for row, m, caption in zip(ids, mask, CAPTIONS[:2], strict=True):
        assert row[m].tolist() == [*processor.encode(caption), 1]
    embeds, _ = encoder.encode(CAPTIONS[:2])
    torch.testing.assert_close(embeds, T5TextEncoder.from_pretrained("embedded").encode(CAPTIONS[:2])[0])


def test_load_text_encoder_follows_the_config():
    encoder = load_text_encoder(TextEncoderConfig(max_length=8, dtype="bfloat16"))
    assert encoder.max_length == 8 and encoder.dtype == torch.bfloat16 and encoder.embed_dim == 256
    embeds, mask = encoder.encode([CAPTIONS[1]])
    assert embeds.shape == (1, 8, 256) and bool(mask.all())


def test_no_heavy_import_at_import_time():
    code = "import sys, imagen.text, imagen.text_cache; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "False"


# -- the embedded encoder ------------------------------------------------------------------------------

def test_embedded_loads_offline_in_under_a_second(embedded):
    import transformers  # noqa: F401  (import time is not load time)

    assert resolve_text_encoder("embedded") == EMBEDDED_DIR
    best = min(_timed(lambda: T5TextEncoder.from_pretrained("embedded")) for _ in range(2))
    assert best < 1.0
    files = [p for p in EMBEDDED_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10e6


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_embedded_features(embedded):
    embeds, mask = embedded.encode(CAPTIONS[:2])
    rms = embeds[mask].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)  # T5's final RMS norm
    # word order survives: swapping the object and background colours changes even the order-blind mean
    (a, b), _ = embedded.encode(["a small red circle at the top on a blue background",
                                 "a small blue circle at the top on a red background"])
    assert torch.nn.functional.cosine_similarity(a.mean(0), b.mean(0), dim=0) < 0.99


def test_embedded_shapes_words_are_single_tokens(embedded):
    words = {w for i in range(500) for w in training_scene(0, i).caption.split()}
    for word in sorted(words):
        assert len(embedded.tokenizer(word)["input_ids"]) == 2, word  # the word and </s>


def test_embedded_byte_fallback_encodes_any_text(embedded):
    text = "Ein Kreis — 日本語 🎨 Ünïcødé, 42!"
    ids = embedded.tokenizer(text)["input_ids"]
    assert 2 not in ids  # never <unk>
    assert embedded.tokenizer.decode(ids, skip_special_tokens=True) == text.lower()  # case folded
    embeds, mask = embedded.encode([text])
    assert bool(torch.isfinite(embeds).all()) and int(mask.sum()) == min(len(ids), 32)


def test_embedded_tokenizer_matches_sentencepiece(embedded):
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(EMBEDDED_DIR / "spiece.model"))
    for text in [*CAPTIONS, "  A  RED\tcircle  ", "naïve café 日本 🎨", "x" * 40, "a\nb"]:
        ids = embedded.tokenizer(text)["input_ids"]
        assert ids[:-1] == processor.encode(text) and ids[-1] == 1, text


def _build_script():
    spec = importlib.util.spec_from_file_location("build_text_encoder", REPO / "scripts" / "build_text_encoder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embedded_build_is_reproducible(tmp_path):
    build = _build_script()
    build.build(tmp_path)
    for name in build.TOKENIZER_FILES + build.MODEL_FILES:
        assert (tmp_path / name).read_bytes() == (EMBEDDED_DIR / name).read_bytes(), name


def test_the_embedded_tokenizer_spells_any_new_word_without_the_unknown_token():
    """Byte fallback: a word the vocabulary never saw (a new subject's rare token, any script) becomes its own
    sequence of pieces, so fine-tuning can give it a meaning; `unknown_words` names such words."""
    from configs.schema import TextEncoderConfig
    from imagen.text import load_text_encoder

    encoder = load_text_encoder(TextEncoderConfig())
    tokenizer = encoder.tokenizer
    words = ["zxq", "sks", "étoile", "★", "звезда"]
    spelled = [tuple(tokenizer(word, add_special_tokens=False)["input_ids"]) for word in words]
    assert all(tokenizer.unk_token_id not in ids for ids in spelled)
    assert len(set(spelled)) == len(words)
    assert encoder.unknown_words("a small zxq at the center") == ["zxq"]
