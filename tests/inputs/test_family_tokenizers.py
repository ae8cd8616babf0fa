"""The Gemma and GLM chat-style tokenizers (Sana / Lumina2, CogView4), the text-only
processor stand-ins (Kandinsky 5; FLUX.3's with ``.tokenizer``) and our own prompt encoding for the LoRA rows of the step
suite (``PromptEmbeds``), without a pipeline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from harness.inputs.families.components import FAMILY_PIPELINES, PromptEmbeds  # noqa: E402
from harness.inputs.models.specs import T5_CONFIG, T5_PAD  # noqa: E402
from harness.inputs.models.tokenizers import (  # noqa: E402
    BYTE_SYMBOLS,
    CHAT_STYLES,
    chat_tokenizer,
    qwen_processor,
    qwen_vl_processor,
    t5_tokenizer,
)
from harness.scenarios.family_steps import prompt_embeds  # noqa: E402

USER_STRING = [{"role": "user", "content": "a photo"}]
USER_PARTS = [{"role": "user", "content": [{"type": "text", "text": "a photo"}]}]


def test_gemma_prepends_bos_and_renders_turns() -> None:
    """Gemma encodings open with ``<bos>``; turns in its markup, the assistant is ``model``."""
    gemma = chat_tokenizer("gemma")
    ids = gemma("ab").input_ids
    assert ids[0] == CHAT_STYLES["gemma"].token_id("<bos>") and len(ids) == 3
    expected = "<bos><start_of_turn>user\na photo<end_of_turn>\n<start_of_turn>model\n"
    for messages in (USER_STRING, USER_PARTS):
        text = gemma.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == expected
    reply = gemma.apply_chat_template([{"role": "assistant", "content": "ok"}], tokenize=False)
    assert reply == "<bos><start_of_turn>model\nok<end_of_turn>\n"


def test_glm_encodes_bare_and_templates_with_gmask_prefix() -> None:
    glm = chat_tokenizer("glm")
    ids = glm("ab").input_ids
    assert len(ids) == 2 and max(ids) < BYTE_SYMBOLS  # two bytes, no special prefix
    text = glm.apply_chat_template(USER_PARTS, tokenize=False, add_generation_prompt=True)
    assert text == "[gMASK]<sop><|user|>\na photo<|assistant|>\n"
    assert glm.pad_token_id == CHAT_STYLES["glm"].token_id("<|endoftext|>")


def test_prompt_embeds_are_the_encoders_states_with_pads_zeroed() -> None:
    """Our encoding for the LoRA rows: the last hidden state on the real tokens, exactly
    zero on the padding (what Wan / SkyReels-V2 hand their transformer)."""
    config = transformers.T5Config(**T5_CONFIG)
    torch.manual_seed(0)
    encoder = transformers.T5EncoderModel(config).eval()
    tokenizer = t5_tokenizer()
    spec = FAMILY_PIPELINES["wan"]
    assert spec.embeds == PromptEmbeds(max_length=16)
    pipe = SimpleNamespace(text_encoder=encoder, tokenizer=tokenizer)
    embeds = prompt_embeds(pipe, spec)["prompt_embeds"]
    ids = tokenizer(spec.call["prompt"]).input_ids
    assert embeds.shape == (1, 16, T5_CONFIG["d_model"])
    with torch.no_grad():
        expected = encoder(torch.tensor([ids])).last_hidden_state[0]
    torch.testing.assert_close(embeds[0, : len(ids)], expected, rtol=1e-5, atol=1e-6)
    assert bool((embeds[0, len(ids) :] == 0).all()) and len(ids) < 16
    assert T5_PAD not in ids


def test_qwen_processor_takes_a_processor_call_and_refuses_images() -> None:
    """Kandinsky 5 calls its tokenizer as a processor: ``text=`` plus ``images=None`` gives
    the plain ChatML encoding; an image is refused, never silently dropped."""
    plain = chat_tokenizer("qwen")
    processor = qwen_processor()
    ids = processor(text=["a photo"], images=None, videos=None, padding=True)["input_ids"]
    assert ids == plain(["a photo"], padding=True)["input_ids"]
    with pytest.raises(ValueError, match="images"):
        processor(text=["a photo"], images=[object()])


def test_qwen_vl_processor_answers_tokenizer_templates_and_decodes() -> None:
    """FLUX.3 templates with the processor, tokenizes with ``processor.tokenizer`` and
    decodes its upsampler's ids: the stand-in is its own tokenizer, the template tokenized
    through it equals the plain ChatML encoding, and byte ids decode to their text."""
    plain = chat_tokenizer("qwen")
    processor = qwen_vl_processor()
    assert processor.tokenizer is processor
    text = processor.apply_chat_template(USER_STRING, tokenize=False, add_generation_prompt=True)
    assert text == plain.apply_chat_template(
        USER_STRING, tokenize=False, add_generation_prompt=True
    )
    batch = processor.apply_chat_template(
        USER_PARTS, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    ids = batch["input_ids"][0].tolist()
    assert ids == plain(text, add_special_tokens=False)["input_ids"]
    assert processor.decode(plain("a photo", add_special_tokens=False)["input_ids"]) == "a photo"
    with pytest.raises(ValueError, match="images"):
        processor(text=["a photo"], images=[object()])
