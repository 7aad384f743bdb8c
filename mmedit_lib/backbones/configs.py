"""Configurations of the tiny backbones: the real BLIP-2 and LLaVA classes at toy size.

    >>> from mmedit_lib.backbones.configs import tiny_blip2_config, tiny_llava_config
    >>> cfg = tiny_blip2_config("opt", vocab_size=500)
    >>> cfg.text_config.model_type, cfg.num_query_tokens
    ('opt', 8)
    >>> cfg = tiny_llava_config(vocab_size=500)
    >>> cfg.vision_config.model_type, cfg.vision_feature_layer, cfg.image_seq_length
    ('clip_vision_model', -2, 16)

Pitfalls of transformers 5.23 handled here: the vision initializer_range defaults to 1e-10, OPT needs
word_embed_proj_dim == hidden_size, every dropout is set to 0.
"""
from __future__ import annotations

from transformers import (Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, CLIPVisionConfig, LlamaConfig,
                          LlavaConfig, OPTConfig)

IMAGE_SIZE = 64
PATCH_SIZE = 8
NUM_QUERY_TOKENS = 8
HIDDEN = 128
MAX_POSITIONS = 1024  # 40 short demonstrations + image tokens + query fit (UniKE Fig. 4a goes to 40)
PAD_ID, EOS_ID, BOS_ID, IMAGE_ID = 0, 1, 2, 3
# OPT gets 8 heads of 16: with 4 heads of 32 the tiny OPT never learned to copy an answer from its context within
# the training budget (0-demo in-context following 28-59% in four runs); with 8 heads it did in one of two runs
# (87%; the other 49%) under the old stage-2 defaults, and in every run since (train.FAMILY_DEFAULTS). The LLaMA
# decoder (rotary positions) learns it with 4 heads. Its SwiGLU FFN is 2x wide (3x trained ~20% slower), so both fit the 10-minute budget.
# OPT's FFN is 2x wide too (OPT itself has 4x): with 4x, copying from the context emerged late in phase B (mean
# answer loss over phase-B steps 3000-3500: 1.35 in the run shipped before; 0.66 with 2x, same seed) and in-context
# following stayed below 80% at 8 and 40 demos; each step is also ~13% cheaper. Measurements: train.py.
OPT_FFN_MULTIPLE = 2
OPT_HEADS = 8
LLAMA_HEADS = 4
# tiny-llava: LLaVA-1.5's layout (a CLIP tower read at its penultimate layer, without the class token, through a
# 2-layer GELU projector, into a LLaMA decoder), at the size of the other two. Its patches are 16 px: a 4x4 grid, 16
# image tokens, twice BLIP-2's 8 queries (LLaVA-1.5 has 576 against BLIP-2's 32). At 8 px (64 tokens) the image
# tokens alone would add ~80% to the corpus' tokens and stage 2 could not fit the 10-minute budget; at 16 px they
# add ~11%. 4 CLIP blocks, of which 3 reach the projector (the last is computed and unread, as in LLaVA-1.5).
LLAVA_PATCH_SIZE = 16
LLAVA_VISION_LAYERS = 4


def tiny_text_config(family: str, vocab_size: int, n_layers: int = 4):
    """The tiny decoder: OPT or LLaMA."""
    special = dict(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    if family == "opt":
        return OPTConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=n_layers,
                         ffn_dim=OPT_FFN_MULTIPLE * HIDDEN, num_attention_heads=OPT_HEADS,
                         max_position_embeddings=MAX_POSITIONS, word_embed_proj_dim=HIDDEN,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0,
                         tie_word_embeddings=True, **special)
    if family == "llama":
        return LlamaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                           num_hidden_layers=n_layers, num_attention_heads=LLAMA_HEADS,
                           num_key_value_heads=LLAMA_HEADS,
                           max_position_embeddings=MAX_POSITIONS, attention_dropout=0.0, tie_word_embeddings=True,
                           **special)
    raise ValueError(f"unknown decoder family {family!r}; expected 'opt' or 'llama'")


def tiny_llava_config(vocab_size: int, n_layers: int = 4) -> LlavaConfig:
    vision = CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=LLAVA_VISION_LAYERS,
                              num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE,
                              projection_dim=HIDDEN, initializer_range=0.02, attention_dropout=0.0)
    grid = IMAGE_SIZE // LLAVA_PATCH_SIZE
    return LlavaConfig(vision_config=vision.to_dict(), text_config=tiny_text_config("llama", vocab_size,
                                                                                    n_layers).to_dict(),
                       image_token_index=IMAGE_ID, vision_feature_layer=-2, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu", image_seq_length=grid * grid, tie_word_embeddings=True)


def tiny_blip2_config(family: str, vocab_size: int, n_layers: int = 4) -> Blip2Config:
    vision = Blip2VisionConfig(hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=3,
                               num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
                               initializer_range=0.02, attention_dropout=0.0)
    qformer = Blip2QFormerConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=4 * HIDDEN, encoder_hidden_size=HIDDEN, vocab_size=8,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                 cross_attention_frequency=1, initializer_range=0.02)
    text = tiny_text_config(family, vocab_size, n_layers)
    return Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                       num_query_tokens=NUM_QUERY_TOKENS, image_token_index=IMAGE_ID)
