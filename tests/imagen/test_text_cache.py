"""imagen.text_cache: hits and misses, persistence, invalidation by encoder identity, atomic shards and index
(interrupted builds leave a valid cache that a re-run completes), on-the-fly encoding."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import imagen.text_cache as text_cache
from configs.schema import TextEncoderConfig
from imagen.shapes import training_scene
from imagen.text import load_text_encoder
from imagen.text_cache import TextEmbeddingCache

CAPTIONS = [training_scene(0, i).caption for i in range(10)]


class StubEncoder:
    """A deterministic stand-in for T5 (caption -> pseudo-random (words + 1, 8) rows): the cache logic
    without T5's cost. The real encoder is used where the values matter."""

    embed_dim, max_length = 8, 32

    def __init__(self, **identity_changes):
        self.identity = {"name": "stub", "sha256": "1" * 64, "max_length": 32, "dtype": "float32", "embed_dim": 8,
                         **identity_changes}

    def encode(self, texts):
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            length = min(len(text.split()) + 1, self.max_length)
            rows.append(torch.randn(length, 8, generator=torch.Generator().manual_seed(seed)))
        return text_cache._pad(rows, 8, torch.float32)


class Spy:
    """Wraps an encoder: records what it encodes, can fail on a given call, can claim another identity."""

    def __init__(self, inner, fail_on_call: int | None = None, **identity_changes):
        self.inner, self.fail_on_call, self.calls = inner, fail_on_call, []
        self.embed_dim, self.max_length = inner.embed_dim, inner.max_length
        self.identity = {**inner.identity, **identity_changes}

    def encode(self, texts):
        self.calls.append(list(texts))
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt("simulated crash")
        return self.inner.encode(texts)

    @property
    def encoded(self) -> list[str]:
        return [c for call in self.calls for c in call]


@pytest.fixture(scope="module")
def t5():
    return load_text_encoder(TextEncoderConfig())


@pytest.fixture
def encoder():
    return StubEncoder()


def test_build_then_get_matches_t5(t5, tmp_path):
    encoder = t5
    spy = Spy(encoder)
    cache = TextEmbeddingCache(tmp_path, spy, shard_size=4)
    assert cache.build(CAPTIONS + CAPTIONS[:3], batch_size=3) == 10  # duplicates encoded once
    assert sorted(spy.encoded) == sorted(CAPTIONS)
    assert len(list(cache.path.glob("shard-*.safetensors"))) == 3  # 4 + 4 + 2
    embeds, mask = cache.get(CAPTIONS[::-1])
    expected, expected_mask = encoder.encode(CAPTIONS[::-1])
    assert embeds.dtype == torch.float32 and torch.equal(mask, expected_mask)
    torch.testing.assert_close(embeds, expected, atol=1e-5, rtol=1e-5)
    assert not embeds[~mask].any()


def test_rebuild_is_a_hit_and_persists(encoder, tmp_path):
    TextEmbeddingCache(tmp_path, encoder).build(CAPTIONS[:6])
    spy = Spy(encoder)
    cache = TextEmbeddingCache(tmp_path, spy)  # a new process, same directory
    assert len(cache) == 6 and cache.contains(CAPTIONS[0]) and CAPTIONS[7] not in cache
    assert cache.build(CAPTIONS[:6]) == 0 and spy.calls == []
    assert cache.build(c for c in CAPTIONS) == 4 and sorted(spy.encoded) == sorted(CAPTIONS[6:])  # misses only
    cache.get(CAPTIONS)
    assert len(spy.calls) == 1


def test_miss_raises_or_encodes_on_the_fly(encoder, tmp_path):
    spy = Spy(encoder)
    cache = TextEmbeddingCache(tmp_path, spy, shard_size=3)
    cache.build(CAPTIONS[:2])
    with pytest.raises(KeyError, match="not in the text cache.*cache.build"):
        cache.get(CAPTIONS[:3])
    embeds, mask = cache.encode(CAPTIONS[:3])  # misses encoded now, not kept
    assert torch.equal(embeds, encoder.encode(CAPTIONS[:3])[0])
    assert spy.calls[-1] == [CAPTIONS[2]] and not cache.contains(CAPTIONS[2])
    cache.encode(CAPTIONS[2:4], add=True)  # kept in memory (below shard_size) ...
    assert cache.contains(CAPTIONS[3]) and not TextEmbeddingCache(tmp_path, encoder).contains(CAPTIONS[3])
    cache.flush()  # ... and on disk after flush
    assert TextEmbeddingCache(tmp_path, encoder).contains(CAPTIONS[3])
    cache.encode(CAPTIONS[4:7], add=True)  # reaching shard_size writes a shard by itself
    assert TextEmbeddingCache(tmp_path, encoder).contains(CAPTIONS[6])


def test_other_encoder_identity_invalidates(encoder, tmp_path):
    cache = TextEmbeddingCache(tmp_path, encoder)
    cache.build(CAPTIONS[:2])
    retrained = TextEmbeddingCache(tmp_path, Spy(encoder, sha256="0" * 64))
    shorter = TextEmbeddingCache(tmp_path, Spy(encoder, max_length=8))
    half = TextEmbeddingCache(tmp_path, encoder, storage_dtype="float16")
    moved = TextEmbeddingCache(tmp_path, Spy(encoder, name="/elsewhere/t5", path="/elsewhere/t5"))
    assert len({cache.path, retrained.path, shorter.path, half.path}) == 4
    assert not retrained.contains(CAPTIONS[0]) and not shorter.contains(CAPTIONS[0])
    assert moved.path == cache.path and moved.contains(CAPTIONS[0])  # same files elsewhere: same cache
    index = json.loads((cache.path / "index.json").read_text())
    assert index["identity"]["sha256"] == encoder.identity["sha256"] and index["embed_dim"] == 8


def test_float16_storage(t5, tmp_path):
    encoder = t5
    cache = TextEmbeddingCache(tmp_path, encoder, storage_dtype="float16")
    cache.build(CAPTIONS[:4])
    embeds, _ = cache.get(CAPTIONS[:4])
    assert embeds.dtype == torch.float32
    torch.testing.assert_close(embeds, encoder.encode(CAPTIONS[:4])[0], atol=2e-3, rtol=2e-3)


def test_interrupted_build_leaves_a_valid_cache_that_a_rerun_completes(encoder, tmp_path):
    crashing = Spy(encoder, fail_on_call=4)
    with pytest.raises(KeyboardInterrupt):
        TextEmbeddingCache(tmp_path, crashing, shard_size=4).build(CAPTIONS, batch_size=2)
    survivor = TextEmbeddingCache(tmp_path, encoder)
    assert len(survivor) == 4  # the one finished shard; the batch in flight is lost
    survivor.get(crashing.encoded[:4])
    spy = Spy(encoder)
    assert TextEmbeddingCache(tmp_path, spy, shard_size=4).build(CAPTIONS, batch_size=2) == 6
    embeds, _ = TextEmbeddingCache(tmp_path, encoder).get(CAPTIONS)
    assert torch.equal(embeds, encoder.encode(CAPTIONS)[0])


@pytest.mark.parametrize("crash_on_write", [1, 2, 4])  # shard 1, index 1, index 2 (shard 2 on disk)
def test_crash_mid_write_is_harmless(encoder, tmp_path, monkeypatch, crash_on_write):
    """A process killed while writing leaves a partial temp file and maybe an unindexed shard: readers
    ignore both, and the next build cleans up and completes."""
    real_write, writes = text_cache.atomic_write, []

    def dying_write(path, data):
        writes.append(path.name)
        if len(writes) == crash_on_write:
            tmp = path.with_name(f".{path.name}.999.tmp")
            tmp.write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt("killed mid-write")
        real_write(path, data)

    monkeypatch.setattr(text_cache, "atomic_write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        TextEmbeddingCache(tmp_path, encoder, shard_size=5).build(CAPTIONS)
    monkeypatch.setattr(text_cache, "atomic_write", real_write)
    survivor = TextEmbeddingCache(tmp_path, encoder, shard_size=5)
    kept = len(survivor)
    assert kept == (5 if crash_on_write == 4 else 0)
    assert survivor.build(CAPTIONS) == 10 - kept
    assert not list(survivor.path.glob(".*.tmp"))
    embeds, _ = TextEmbeddingCache(tmp_path, encoder).get(CAPTIONS)
    assert torch.equal(embeds, encoder.encode(CAPTIONS)[0])


def test_damaged_shard_is_reported(encoder, tmp_path):
    cache = TextEmbeddingCache(tmp_path, encoder)
    cache.build(CAPTIONS[:3])
    shard = next(cache.path.glob("shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ValueError, match="damaged"):
        TextEmbeddingCache(tmp_path, encoder).contains(CAPTIONS[0])


def test_unicode_captions_and_empty_batches(encoder, tmp_path):
    """Captions are stored as JSON in the shard metadata: any text round-trips."""
    captions = ["日本語のキャプション 🎨", "", 'quotes " and \\ backslashes']
    cache = TextEmbeddingCache(tmp_path, encoder)
    cache.build(captions)
    embeds, mask = TextEmbeddingCache(tmp_path, encoder).get(captions)
    assert torch.equal(embeds, encoder.encode(captions)[0])
    embeds, mask = cache.get([])
    assert embeds.shape == (0, 0, 8) and mask.shape == (0, 0)
