"""The family step's inputs and oracle, without building a pipeline: the generated
chat-style tokenizers (ids, markup, templates), the component data's id chaining, and our
reference merge against a hand-computed ``W + (alpha / rank) B A``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from harness.inputs.families.components import FAMILY_PIPELINES  # noqa: E402
from harness.inputs.families.table import FAMILIES  # noqa: E402
from harness.inputs.models.specs import TEXT_VOCAB  # noqa: E402
from harness.inputs.models.tokenizers import BYTE_SYMBOLS, CHAT_STYLES, chat_tokenizer  # noqa: E402
from harness.oracles.lora import Reference, Term  # noqa: E402
from harness.oracles.lora_merge import merge_reference  # noqa: E402


@pytest.mark.parametrize("style", list(CHAT_STYLES))
def test_chat_tokenizer_ids(style: str) -> None:
    """Bytes are ids 0-255, each special token one id from 256 on; bos only where set."""
    chat = CHAT_STYLES[style]
    tok = chat_tokenizer(style)
    marker = chat.specials[-1]
    ids = tok("ab" + marker).input_ids
    body = ids[1:] if chat.bos else ids
    assert len(body) == 3 and max(body[:2]) < BYTE_SYMBOLS
    assert body[2] == chat.token_id(marker) == BYTE_SYMBOLS + len(chat.specials) - 1
    if chat.bos:
        assert ids[0] == chat.token_id(chat.bos)
    assert tok.pad_token_id == chat.token_id(chat.pad)
    assert tok.eos_token_id == chat.token_id(chat.eos)
    assert max(ids) < TEXT_VOCAB


def test_chat_templates_render_string_and_part_contents() -> None:
    """Z-Image sends a string content, Flux2 a list of text parts: both reach the text."""
    qwen = chat_tokenizer("qwen")
    text = qwen.apply_chat_template(
        [{"role": "user", "content": "a photo"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\na photo<|im_end|>\n<|im_start|>assistant\n"
    mistral = chat_tokenizer("mistral")
    parts = [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "text", "text": "a photo"}]},
    ]
    text = mistral.apply_chat_template(parts, tokenize=False)
    assert text == "<s>[SYSTEM_PROMPT]be brief[/SYSTEM_PROMPT][INST]a photo[/INST]"


def test_component_data_names_table_families_and_small_ids() -> None:
    """Every complete pipeline is a table family; every token id a config names fits the
    text encoders' vocabulary (an id past it would index out of the embedding)."""
    assert set(FAMILY_PIPELINES) <= set(FAMILIES)

    def ids(value: object) -> list[int]:
        if isinstance(value, dict):
            found = [v for k, v in value.items() if k.endswith("token_id") and isinstance(v, int)]
            return found + [i for v in value.values() for i in ids(v)]
        return []

    def vocab(config: dict) -> int:  # the config's own vocabulary, where it names one
        text = config.get("text_config")
        if isinstance(text, dict) and "vocab_size" in text:
            return int(text["vocab_size"])
        return int(config.get("vocab_size", TEXT_VOCAB))

    for spec in FAMILY_PIPELINES.values():
        for component in spec.components.values():
            config = dict(component.config)
            size = vocab(config)
            assert size <= TEXT_VOCAB, component
            assert all(0 <= i < size for i in ids(config)), component


def test_merge_reference_adds_scaled_delta_to_named_modules_only() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    before = [m.weight.detach().clone() for m in model]
    down, up = torch.randn(2, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    ref = Reference(terms={("transformer", "0"): [Term(down, up, 0.5, ("a", "b"), torch.float32)]})
    merged = merge_reference(model, ref, "transformer", weight=2.0)
    assert merged == ["0"]
    expected = before[0].double() + 2.0 * 0.5 * (up @ down)
    torch.testing.assert_close(model[0].weight.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(model[1].weight, before[1])
    assert merge_reference(model, ref, "text_encoder") == []
