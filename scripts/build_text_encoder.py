"""Build the embedded text encoder shipped in `imagen/assets/t5-embedded/` (`text.name = "embedded"`).

What it is, honestly: a small `T5EncoderModel` (T5 v1.1 layout: gated-GELU, RMS layer norms, relative
position buckets) with *random* weights drawn from a fixed seed, and a sentencepiece unigram vocabulary
(byte fallback, case folding) trained on shapes captions. It has never seen language; the U-Nets learn to
read its features. Three choices make those features readable:
- every real token leaves through T5's final RMS norm, so token vectors have root-mean-square 1 and random
  token embeddings (std 1, dimension 256) are nearly orthogonal: distinct words stay clearly apart;
- word order must survive (which colour goes with the object, which with the background), and a random
  T5's relative-position bias is too weak (std 1/16) to make attention depend on position. So the bias is
  set, not drawn: head h attends (logit +8) to the token at a fixed offset in (-1, +1, -2, +2, -3, +3, -4,
  +4). Each output then mixes its neighbours through different random value maps (local n-gram features)
  and a permutation-invariant reader (cross-attention, pooling) can tell "red circle on a blue background"
  from "blue circle on a red background";
- the attention and feed-forward output projections are drawn at half T5's init scale, so after three layers
  a token's own embedding still dominates its output vector (the neighbours add the context).
`scripts/text_encoder_report.py` (via `--report`) prints the figures behind these choices.

Reproducible: the same files, bit for bit, on every run (`--check` verifies the shipped ones). The vocabulary
needs only sentencepiece; the weights use an explicit torch.Generator, not transformers' initialiser.

    python scripts/build_text_encoder.py            # rebuild imagen/assets/t5-embedded/
    python scripts/build_text_encoder.py --check    # exit 1 if a rebuild differs from the shipped files
    python scripts/build_text_encoder.py --report   # similarity / binding figures (JSON)
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imagen.shapes import training_scene  # noqa: E402

OUT = ROOT / "imagen" / "assets" / "t5-embedded"
SEED = 0
NUM_CAPTIONS = 20_000
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5
HEAD_OFFSETS = (-1, 1, -2, 2, -3, 3, -4, 4)  # relative position each head looks at
BIAS_STRENGTH = 8.0  # attention logit added at that offset (content logits have std ~1)
RESIDUAL_SCALE = 0.5  # std of the attention and feed-forward output projections, relative to T5's init
MODEL = {"d_model": 256, "d_kv": 32, "num_heads": len(HEAD_OFFSETS), "d_ff": 512, "num_layers": 3,
         "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
         "feed_forward_proj": "gated-gelu", "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6}
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")
MODEL_FILES = ("config.json", "model.safetensors")


def training_captions(count: int = NUM_CAPTIONS, seed: int = SEED) -> list[str]:
    return [training_scene(seed, i).caption for i in range(count)]


def train_sentencepiece(captions: list[str]) -> bytes:
    """A serialized sentencepiece unigram model: T5's special ids, byte fallback, NFKC + case folding.

    sentencepiece seeds its candidate pieces from repeated substrings, and in shapes captions a word is
    always followed by a space, so almost no whole word becomes a candidate. The candidates are therefore
    given explicitly (every substring of every "▁word", weighted by frequency); EM on the captions still
    decides which pieces stay and their scores."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    counts = collections.Counter(word for caption in captions for word in caption.split())
    seeds: collections.Counter[str] = collections.Counter()
    for word, n in counts.items():
        piece = "▁" + word
        for i in range(len(piece)):
            for j in range(i + 2, len(piece) + 1):
                seeds[piece[i:j]] += n
    with tempfile.TemporaryDirectory() as tmp:
        seed_file = Path(tmp) / "seeds.tsv"
        seed_file.write_text("".join(f"{p}\t{n}\n" for p, n in sorted(seeds.items())), encoding="utf-8")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(captions), model_writer=buffer, model_type="unigram", vocab_size=320,
            hard_vocab_limit=False, byte_fallback=True, character_coverage=1.0, seed_sentencepieces_file=str(seed_file),
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="nmt_nfkc_cf", num_threads=1,
            minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    proto.trainer_spec.ClearField("seed_sentencepieces_file")  # a temporary path: keep the file reproducible
    assert [p.piece for p in proto.pieces[:3]] == list(SPECIALS)
    return proto.SerializeToString(deterministic=True)


def fast_tokenizer(spiece: bytes):
    """The sentencepiece model as a `tokenizers` Unigram with byte fallback (same pieces, same ids, same
    normalisation), ending every sequence with </s> like T5's tokenizer."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spiece)
    vocab = [(p.piece, p.score) for p in proto.pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([  # sentencepiece: charsmap, then trim and squeeze spaces
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="always"),
                                           decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    return tokenizer


def build_model(vocab_size: int, seed: int = SEED):
    """A T5EncoderModel with weights drawn from `seed` (HF T5's init scales, factor 1) and the designed
    relative-position bias."""
    from transformers import T5Config, T5EncoderModel
    from transformers.models.t5.modeling_t5 import T5Attention

    config = T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      tie_word_embeddings=False, use_cache=False, **MODEL)
    model = T5EncoderModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    d_model, d_kv, heads, d_ff = MODEL["d_model"], MODEL["d_kv"], MODEL["num_heads"], MODEL["d_ff"]
    std = {"shared": 1.0, ".q.": (d_model * d_kv) ** -0.5, ".k.": d_model ** -0.5, ".v.": d_model ** -0.5,
           ".o.": RESIDUAL_SCALE * (heads * d_kv) ** -0.5, ".wi_0.": d_model ** -0.5, ".wi_1.": d_model ** -0.5,
           ".wo.": RESIDUAL_SCALE * d_ff ** -0.5}
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "layer_norm" in name:
                param.fill_(1.0)
            elif "relative_attention_bias" in name:  # (buckets, heads)
                param.zero_()
                for head, offset in enumerate(HEAD_OFFSETS):
                    bucket = T5Attention._relative_position_bucket(
                        torch.tensor(offset), bidirectional=True, num_buckets=MODEL["relative_attention_num_buckets"],
                        max_distance=MODEL["relative_attention_max_distance"])
                    param[int(bucket), head] = BIAS_STRENGTH
            else:
                scale = next(s for key, s in std.items() if key in name)
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def model_config_json(vocab_size: int) -> str:
    """config.json written by hand (sorted, no library version), so it does not change with transformers."""
    config = {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": vocab_size, "pad_token_id": 0,
              "eos_token_id": 1, "decoder_start_token_id": 0, "tie_word_embeddings": False, "use_cache": False,
              "is_encoder_decoder": True, "dtype": "float32", **MODEL}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def tokenizer_config_json() -> str:
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
              "unk_token": "<unk>", "model_max_length": 512, "padding_side": "right",
              "clean_up_tokenization_spaces": False}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def write_tokenizer(out: Path, captions: list[str]) -> int:
    """spiece.model, tokenizer.json, tokenizer_config.json; returns the vocabulary size."""
    spiece = train_sentencepiece(captions)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spiece.model").write_bytes(spiece)
    tokenizer = fast_tokenizer(spiece)
    (out / "tokenizer.json").write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(tokenizer_config_json(), encoding="utf-8")
    return tokenizer.get_vocab_size(with_added_tokens=True)


def write_model(out: Path, vocab_size: int) -> None:
    from safetensors.torch import save_file

    model = build_model(vocab_size)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)
    (out / "config.json").write_text(model_config_json(vocab_size), encoding="utf-8")


def build(out: Path = OUT, tokenizer_only: bool = False) -> None:
    vocab_size = write_tokenizer(out, training_captions())
    if not tokenizer_only:
        write_model(out, vocab_size)


def check(out: Path = OUT) -> list[str]:
    """Names of shipped files that a fresh build does not reproduce bit for bit."""
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        return [name for name in TOKENIZER_FILES + MODEL_FILES
                if not (out / name).is_file() or (out / name).read_bytes() != (Path(tmp) / name).read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output directory (default: the package assets)")
    parser.add_argument("--check", action="store_true", help="rebuild in a temporary directory and compare")
    parser.add_argument("--report", action="store_true", help="print similarity and binding figures as JSON")
    args = parser.parse_args(argv)
    if args.check:
        differ = check(args.out)
        print("reproducible" if not differ else f"differs from a fresh build: {', '.join(differ)}")
        return 1 if differ else 0
    if args.report:
        from text_encoder_report import report  # scripts/text_encoder_report.py

        print(json.dumps(report(args.out), indent=2))
        return 0
    build(args.out)
    sizes = {name: (args.out / name).stat().st_size for name in TOKENIZER_FILES + MODEL_FILES}
    print(json.dumps({"out": str(args.out), "bytes": sizes, "total_mb": round(sum(sizes.values()) / 1e6, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
