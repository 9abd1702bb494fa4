"""Tiny random MusicGen and MusicGen-Melody checkpoints, built in code for offline tests.

The architecture is the real one (T5 text encoder, EnCodec 32 kHz codec with 4 codebooks of
2048 codes at 50 frames/s, MusicGen decoder) with every width cut down, so the engine loads
and runs it through exactly the path a downloaded checkpoint takes: `from_pretrained` on a
folder holding config.json, safetensors weights, the tokenizer files and a model card.
The tokenizer is a real Unigram model (what T5 uses) trained here with `tokenizers`.
"""

from __future__ import annotations

from pathlib import Path

TRAINING_TEXT = (
    "pop song rock song upbeat driving synth pop power ballad piano electric guitars drums bass pad "
    "bpm in a minor major key verse chorus bridge intro outro full band punchy wide warm bright soft "
    "instrumental backing track with sparse arpeggio strings acoustic energetic anthem slow fast"
).split()


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tokenizer.train_from_iterator([" ".join(TRAINING_TEXT)] * 20, trainer=trainer)
    wrapped = T5TokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                              extra_ids=0)
    wrapped.save_pretrained(folder)


def _configs(*, melody: bool, stereo: bool, vocab: int):
    from transformers import EncodecConfig, MusicgenDecoderConfig, T5Config

    text = T5Config(vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1,
                    num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=2048, hidden_size=16,
                          num_filters=4, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2],
                          num_lstm_layers=1, use_causal_conv=False, norm_type="weight_norm")
    decoder = MusicgenDecoderConfig(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=2,
                                    ffn_dim=32, num_attention_heads=2, hidden_size=16,
                                    num_codebooks=8 if stereo else 4, audio_channels=2 if stereo else 1,
                                    pad_token_id=2048, bos_token_id=2048)
    if melody:
        from transformers import MusicgenMelodyDecoderConfig

        decoder = MusicgenMelodyDecoderConfig(**{k: v for k, v in decoder.to_dict().items()
                                                 if k in MusicgenMelodyDecoderConfig.__dataclass_fields__})
    return text, codec, decoder


def build_tiny_musicgen(folder: Path, *, melody: bool = False, stereo: bool = False, seed: int = 0,
                        licence: str | None = "cc-by-nc-4.0") -> Path:
    """Save a random tiny checkpoint into `folder` and return it. `licence=None`: no model card."""
    import torch
    from transformers import (
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer(folder)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(folder))
    text, codec, decoder = _configs(melody=melody, stereo=stereo, vocab=vocab)
    torch.manual_seed(seed)
    if melody:
        config = MusicgenMelodyConfig(text_encoder=text, audio_encoder=codec, decoder=decoder, num_chroma=12,
                                      chroma_length=235)
        model = MusicgenMelodyForConditionalGeneration(config)
    else:
        config = MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=decoder)
        model = MusicgenForConditionalGeneration(config)
    # EnCodec's codebooks are buffers that start at zero (a trained codec learns them); random
    # ones make the decoded audio depend on the codes, as in a real checkpoint.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
            layer.codebook.inited.fill_(1.0)
    model.generation_config.update(do_sample=True, guidance_scale=3.0, max_length=1503, top_k=250,
                                   decoder_start_token_id=2048, pad_token_id=2048, bos_token_id=2048)
    model.save_pretrained(folder)
    if licence is not None:
        (folder / "README.md").write_text(f"---\nlicense: {licence}\ntags:\n- musicgen\n---\n# tiny test model\n")
    return folder
