"""Word-level tokenizer for the tiny backbones, built from the world's vocabulary.

    >>> from mmedit_lib.backbones.tokenizer import build_word_tokenizer
    >>> tok = build_word_tokenizer(["what", "color", "?"])
    >>> tok("What color ?")["input_ids"]
    [5, 6, 7]
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad": "<pad>", "eos": "</s>", "bos": "<s>", "image": "<image>", "unk": "<unk>"}


def build_word_tokenizer(words) -> PreTrainedTokenizerFast:
    """Ids 0-4 are <pad>, </s>, <s>, <image>, <unk>; then the words in the order given (deduplicated)."""
    vocab: dict[str, int] = {}
    for token in list(SPECIAL_TOKENS.values()) + [w.lower() for w in words]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=SPECIAL_TOKENS["pad"], eos_token=SPECIAL_TOKENS["eos"],
        bos_token=SPECIAL_TOKENS["bos"], unk_token=SPECIAL_TOKENS["unk"],
        extra_special_tokens={"image_token": SPECIAL_TOKENS["image"]})
