"""The ``qwen-vl-processor`` stand-in's modality ids, which MiniMax-H3's text step reads: a
Qwen-VL processor marks image / video ids 1 / 2 and text 0; the generated vocabulary has
no vision token, so every id of a prompt is text, and an id it does not have is refused
rather than called text."""

from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from harness.inputs.models.tokenizers import qwen_tokenizer, qwen_vl_processor  # noqa: E402


def test_every_prompt_id_is_text_row_for_row() -> None:
    processor = qwen_vl_processor()
    short = qwen_tokenizer()("a photo", add_special_tokens=False)["input_ids"]
    marked = processor.tokenizer("<|im_start|>user\na cat<|im_end|>")["input_ids"]
    types = processor.create_mm_token_type_ids([short, marked])
    assert types == [[0] * len(short), [0] * len(marked)]
    assert len(short) == 7 and max(marked) == len(processor) - 1  # a special token's id


def test_an_id_outside_the_vocabulary_is_refused() -> None:
    processor = qwen_vl_processor()
    with pytest.raises(ValueError, match=str(len(processor))):
        processor.create_mm_token_type_ids([[1, 2, len(processor)]])
