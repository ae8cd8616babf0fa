"""Tokenizers generated in memory (no hub, no files).

Why built with the ``tokenizers`` library and wrapped via ``tokenizer_object=``: writing a
``vocab.json`` + ``merges.txt`` and loading it works in transformers 4.x but not in 5.x
(the file loaders changed), and a SentencePiece T5 tokenizer needs ``sentencepiece`` and
a binary model file. Only components whose Python constructors are stable from tokenizers
0.15 to 0.23 are used (no ``RobertaProcessing`` keywords, no ``Metaspace``); the ids are
identical in every cell of the matrix.

* CLIP: byte-level BPE with CLIP's ``</w>`` end-of-word suffix, no merges (one token per
  byte), ``<|startoftext|>`` = 512, ``<|endoftext|>`` = 513; the pre-tokenizer is a
  ``Sequence`` because ``CLIPTokenizerFast`` (4.x) rejects anything else.
* T5: a Unigram model over lowercase characters, ``</s>`` appended, ``<pad>`` = 0.
"""

from __future__ import annotations

import string
from typing import Any

from harness.inputs.models.specs import CLIP_BOS, CLIP_EOS, T5_EOS, T5_PAD

_CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+"""
)


def _transformers_class(*names: str) -> Any:
    """First of ``names`` transformers has (``CLIPTokenizerFast`` is ``CLIPTokenizer`` in 5.x)."""
    import transformers

    for name in names:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    raise ImportError(f"transformers {transformers.__version__} has none of {names}")


def clip_tokenizer(model_max_length: int = 77, pad_token: str = "<|endoftext|>") -> Any:
    """A CLIP tokenizer with a 514-token byte-level vocabulary."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = CLIP_BOS
    vocab["<|endoftext|>"] = CLIP_EOS
    assert len(vocab) == CLIP_EOS + 1, "byte-level alphabet must have 256 symbols"

    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[],
            unk_token="<|endoftext|>",
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            fuse_unk=False,
        )
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        pair="<|startoftext|> $A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|startoftext|>", CLIP_BOS), ("<|endoftext|>", CLIP_EOS)],
    )
    # SDXL's second tokenizer pads with "!", a byte-level symbol already in the vocab.
    assert pad_token in vocab, f"pad token {pad_token!r} must be in the vocabulary"
    cls = _transformers_class("CLIPTokenizerFast", "CLIPTokenizer")
    return cls(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token=pad_token,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def t5_tokenizer(model_max_length: int = 512) -> Any:
    """A T5 tokenizer: Unigram over characters, ``</s>`` appended."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    symbols = string.ascii_lowercase + string.digits + ".,!?'-"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(ch, -3.0) for ch in symbols]
    assert pieces[T5_PAD][0] == "<pad>" and pieces[T5_EOS][0] == "</s>"
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", T5_EOS)]
    )
    cls = _transformers_class("T5TokenizerFast", "T5Tokenizer")
    return cls(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


GENERATORS = {"clip": clip_tokenizer, "t5": t5_tokenizer}
