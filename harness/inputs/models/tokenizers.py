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
* Llama-3 / Qwen2 / Mistral / Gemma / GLM styles (the families' LLM text encoders): byte-level BPE with
  no merges (one token per byte, ids 0-255), the style's special tokens from 256 on (see
  ``CHAT_STYLES``), and a Jinja chat template in the style's markup for the pipelines
  that call ``apply_chat_template`` (``qwen-processor``: the same behind a multimodal
  processor's call signature, for Kandinsky 5). Wrapped in the generic fast tokenizer class
  (``PreTrainedTokenizerFast``, ``TokenizersBackend`` in 5.x), which takes a
  ``tokenizer_object`` in every cell; the pipelines only call it and its chat template.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
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


#: Byte symbols of the byte-level styles take ids 0-255; special tokens follow in order.
BYTE_SYMBOLS = 256


@dataclass(frozen=True)
class ChatStyle:
    """The special tokens and markup of one LLM tokenizer family."""

    specials: tuple[str, ...]  # ids BYTE_SYMBOLS, BYTE_SYMBOLS + 1, ... in this order
    pad: str
    eos: str
    bos: str | None = None  # prepended to every encoding when set
    chat_template: str | None = None

    def token_id(self, token: str) -> int:
        return BYTE_SYMBOLS + self.specials.index(token)


#: Message text whether ``content`` is a string or a list of ``{"type": "text"}`` parts.
_TEXT = (
    "{% if m['content'] is string %}{% set text = m['content'] %}"
    "{% else %}{% set text = m['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join('') %}{% endif %}"
)

CHAT_STYLES: dict[str, ChatStyle] = {
    # Llama 3 headers (HunyuanVideo formats its own prompt template with them).
    "llama": ChatStyle(
        (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|pad|>",
        ),
        pad="<|pad|>",
        eos="<|end_of_text|>",
        bos="<|begin_of_text|>",
    ),
    # ChatML (Qwen2 / Qwen2.5-VL / Qwen3: Qwen-Image's template, Z-Image's chat template).
    "qwen": ChatStyle(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        pad="<|endoftext|>",
        eos="<|im_end|>",
        chat_template=(
            "{% for m in messages %}" + _TEXT + "<|im_start|>{{ m['role'] }}\n{{ text }}"
            "<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        ),
    ),
    # Mistral 3 instruct markup (Flux2 sends a system and a user message, content as parts).
    "mistral": ChatStyle(
        ("<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
        pad="<pad>",
        eos="</s>",
        chat_template=(
            "{{ bos_token }}{% for m in messages %}" + _TEXT + "{% if m['role'] == 'system' %}"
            "[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]{% elif m['role'] == 'user' %}"
            "[INST]{{ text }}[/INST]{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
        ),
    ),
    # Gemma / Gemma-2 (Sana, Lumina2): ``<bos>`` prepended to every encoding, turns in
    # ``<start_of_turn>`` markup with the assistant called ``model``.
    "gemma": ChatStyle(
        ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"),
        pad="<pad>",
        eos="<eos>",
        bos="<bos>",
        chat_template=(
            "{{ bos_token }}{% for m in messages %}" + _TEXT + "<start_of_turn>"
            "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ text }}"
            "<end_of_turn>\n{% endfor %}"
            "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
        ),
    ),
    # GLM-4 (CogView4): no prefix on plain encodings (the pipeline encodes the bare
    # prompt); the chat template opens with GLM's ``[gMASK]<sop>`` pair.
    "glm": ChatStyle(
        ("[gMASK]", "<sop>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"),
        pad="<|endoftext|>",
        eos="<|endoftext|>",
        chat_template=(
            "[gMASK]<sop>{% for m in messages %}" + _TEXT + "<|{{ m['role'] }}|>\n{{ text }}"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        ),
    ),
}


def chat_tokenizer(style: str, model_max_length: int = 512) -> Any:
    """A byte-level tokenizer in one of ``CHAT_STYLES`` (no merges: one token per byte)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    chat = CHAT_STYLES[style]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    assert len(alphabet) == BYTE_SYMBOLS, "byte-level alphabet must have 256 symbols"
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in chat.specials])
    assert all(tok.token_to_id(t) == chat.token_id(t) for t in chat.specials)
    if chat.bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{chat.bos} $A",
            pair=f"{chat.bos} $A {chat.bos} $B",
            special_tokens=[(chat.bos, chat.token_id(chat.bos))],
        )
    extra: dict[str, Any] = {"bos_token": chat.bos} if chat.bos else {}
    if style == "mistral":  # its template opens with the bos token, encodings do not
        extra["bos_token"] = "<s>"
    if chat.chat_template is not None:
        extra["chat_template"] = chat.chat_template
    cls = _transformers_class("PreTrainedTokenizerFast", "TokenizersBackend")
    return cls(
        tokenizer_object=tok,
        eos_token=chat.eos,
        pad_token=chat.pad,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        **extra,
    )


def llama_tokenizer(model_max_length: int = 256) -> Any:
    return chat_tokenizer("llama", model_max_length)


def qwen_tokenizer(model_max_length: int = 512) -> Any:
    return chat_tokenizer("qwen", model_max_length)


def mistral_tokenizer(model_max_length: int = 512) -> Any:
    return chat_tokenizer("mistral", model_max_length)


def gemma_tokenizer(model_max_length: int = 512) -> Any:
    return chat_tokenizer("gemma", model_max_length)


def glm_tokenizer(model_max_length: int = 512) -> Any:
    return chat_tokenizer("glm", model_max_length)


#: The text-only processor class, made once per process (transformers is imported late).
_TEXT_PROCESSOR_CLASSES: dict[type, type] = {}


def _text_only_processor_class(base: type) -> type:
    """``base`` (a fast tokenizer class) called the way a multimodal processor is called:
    ``tok(text=..., images=None, videos=None, ...)``. Kandinsky 5 calls its Qwen2-VL
    processor so; a processor proper needs image / video processors (torchvision in newer
    transformers) for inputs these pipelines never pass. Given images or videos it
    refuses (the step sends none); without them it is ``base`` unchanged."""
    if base not in _TEXT_PROCESSOR_CLASSES:

        class TextOnlyProcessor(base):  # type: ignore[misc, valid-type]
            def __call__(self, text: Any = None, *args: Any, **kwargs: Any) -> Any:
                for modality in ("images", "videos"):
                    if kwargs.pop(modality, None) is not None:
                        raise ValueError(f"a text-only stand-in processor got {modality}")
                return super().__call__(text, *args, **kwargs)

        _TEXT_PROCESSOR_CLASSES[base] = TextOnlyProcessor
    return _TEXT_PROCESSOR_CLASSES[base]


def qwen_processor(model_max_length: int = 2048) -> Any:
    """The Qwen (ChatML) tokenizer behind a processor's call signature (Kandinsky 5)."""
    tok = chat_tokenizer("qwen", model_max_length)
    tok.__class__ = _text_only_processor_class(type(tok))
    return tok


#: The text-only processor class that also exposes ``.tokenizer``, made once per process.
_TOKENIZER_PROCESSOR_CLASSES: dict[type, type] = {}


def qwen_vl_processor(model_max_length: int = 2048) -> Any:
    """:func:`qwen_processor` that also answers ``processor.tokenizer`` (itself), as a real
    processor does: FLUX.3's text step templates with the processor and tokenizes with
    its ``.tokenizer``; its upsampler calls ``apply_chat_template(tokenize=True)`` and
    ``decode``, which the tokenizer has. Also ``create_mm_token_type_ids`` (MiniMax-H3),
    all text."""
    tok = qwen_processor(model_max_length)
    base = type(tok)
    if base not in _TOKENIZER_PROCESSOR_CLASSES:

        class TextOnlyProcessorWithTokenizer(base):  # type: ignore[misc, valid-type]
            @property
            def tokenizer(self) -> Any:
                return self

            def create_mm_token_type_ids(self, input_ids: list) -> list[list[int]]:
                """Each id's modality as a Qwen-VL processor reports it (0 text, 1 image,
                2 video): the generated vocabulary has no vision token, so every id of
                it is text; an id beyond it is no token of ours (MiniMax-H3's text step
                asks this for its prompt's ids)."""
                size = len(self)
                rows = [list(ids) for ids in input_ids]
                stray = sorted({int(i) for row in rows for i in row if not 0 <= int(i) < size})
                if stray:
                    raise ValueError(f"ids {stray[:5]} are outside the {size}-id vocabulary")
                return [[0] * len(row) for row in rows]

        _TOKENIZER_PROCESSOR_CLASSES[base] = TextOnlyProcessorWithTokenizer
    tok.__class__ = _TOKENIZER_PROCESSOR_CLASSES[base]
    return tok


GENERATORS = {
    "clip": clip_tokenizer,
    "t5": t5_tokenizer,
    "llama": llama_tokenizer,
    "qwen": qwen_tokenizer,
    "mistral": mistral_tokenizer,
    "gemma": gemma_tokenizer,
    "glm": glm_tokenizer,
    "qwen-processor": qwen_processor,
    "qwen-vl-processor": qwen_vl_processor,
}
