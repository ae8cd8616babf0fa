"""Verdicts from (expected, observed) and the classification of library exceptions."""

import pytest

from harness.cell.classify import (
    CheckTimeout,
    Finding,
    LibraryError,
    NotRun,
    Unsupported,
    classify_exception,
    outcome_of,
)
from harness.protocol.outcomes import Outcome, Verdict, verdict_for


@pytest.mark.parametrize(
    ("expected", "observed", "verdict"),
    [
        ({Outcome.OK}, Outcome.OK, Verdict.PASS),
        ({Outcome.OK}, Outcome.WRONG_RESULT, Verdict.REGRESSION),
        ({Outcome.OK, Outcome.CLEAR_ERROR}, Outcome.CLEAR_ERROR, Verdict.PASS),
        ({Outcome.CLEAR_ERROR}, Outcome.CRASH, Verdict.REGRESSION),
        ({Outcome.CLEAR_ERROR}, Outcome.OK, Verdict.REGRESSION),
        ({Outcome.OK}, Outcome.UNSUPPORTED, Verdict.UNSUPPORTED),
        ({Outcome.OK}, Outcome.HARNESS_ERROR, Verdict.HARNESS_ERROR),
        ({Outcome.OK}, Outcome.NOT_RUN, Verdict.SKIPPED),
        ({Outcome.OK}, Outcome.TIMEOUT, Verdict.REGRESSION),
    ],
)
def test_verdict_table(expected, observed, verdict):
    assert verdict_for(expected, observed) is verdict


@pytest.mark.parametrize(
    ("exc", "names", "outcome"),
    [
        (
            ValueError("unexpected key lora_unet_x.alpha"),
            ["lora_unet_x.alpha"],
            Outcome.CLEAR_ERROR,
        ),
        (ValueError("something is wrong"), ["lora_unet_x.alpha"], Outcome.UNCLEAR_ERROR),
        (ValueError("Incompatible keys"), [], Outcome.CLEAR_ERROR),
        (AssertionError(), [], Outcome.CRASH),
        (KeyError("double_blocks.0.img_attn.qkv"), [], Outcome.CRASH),
        (
            RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x1024 and 1280x3072)"),
            [],
            Outcome.CRASH,
        ),
        (RuntimeError(""), [], Outcome.CRASH),
        (ValueError("not enough values to unpack (expected 3, got 2)"), [], Outcome.CRASH),
        (ValueError("too many values to unpack (expected 2)"), ["x.alpha"], Outcome.CRASH),
        (  # signature drift: the library called itself with a keyword it no longer takes
            TypeError("load_model_dict_into_meta() got an unexpected keyword argument 'device'"),
            [],
            Outcome.CRASH,
        ),
        (TypeError("f() missing 1 required positional argument: 'x'"), [], Outcome.CRASH),
        (
            RuntimeError(
                "Given groups=1, weight of size [32, 8, 3, 3], expected input[1, 4, 32, 32] "
                "to have 8 channels, but got 4 channels instead"
            ),
            [],
            Outcome.CRASH,
        ),
        (  # names the key, but says nothing a user can act on
            ValueError("Incompatible keys detected: lora_unet_x.alpha"),
            ["lora_unet_x.alpha"],
            Outcome.UNCLEAR_ERROR,
        ),
        (TypeError("rank must be an int, got str"), [], Outcome.CLEAR_ERROR),
        (SystemError("weird"), [], Outcome.CRASH),
    ],
)
def test_classify_library_exceptions(exc, names, outcome):
    assert classify_exception(exc, names)[0] is outcome


def test_format_errors_of_other_packages_are_clear():
    SafetensorError = type("SafetensorError", (Exception,), {})
    assert classify_exception(SafetensorError("header too large"))[0] is Outcome.CLEAR_ERROR


def test_a_shared_suffix_does_not_name_the_key():
    """``img_attn.qkv`` is in every double block: it names nothing of *this* case."""
    exc = ValueError("no module for img_attn.qkv.lora_down.weight")
    name = "transformer.double_blocks.0.img_attn.qkv.lora_down.weight"
    assert classify_exception(exc, [name])[0] is Outcome.UNCLEAR_ERROR


def test_generic_words_do_not_make_a_message_clear():
    exc = ValueError("invalid rank: unexpected shape")
    name = "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"
    assert classify_exception(exc, [name])[0] is Outcome.UNCLEAR_ERROR


@pytest.mark.parametrize(
    "message",
    [
        "unexpected key lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
        "module lora_unet_down_blocks_0_attentions_0_proj_in has no base layer",
    ],
)
def test_the_full_key_or_its_module_path_names_the_case(message):
    name = "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"
    assert classify_exception(ValueError(message), [name])[0] is Outcome.CLEAR_ERROR


def test_valid_input_refused_is_refused_not_a_pass():
    """A clean ValueError on a complete, well-formed file is support the user does not get."""
    from harness.cell.context import CheckContext

    ctx = CheckContext()
    ctx.valid_input("complete kohya sd15 file")
    with pytest.raises(LibraryError) as info, ctx.library_call(names=["lora_unet_x"]):
        raise ValueError("lora_unet_x: this format is not supported")
    assert info.value.outcome is Outcome.REFUSED
    assert verdict_for(ctx.expected, info.value.outcome) is Verdict.REGRESSION
    with pytest.raises(LibraryError) as crash, ctx.library_call():
        raise KeyError("double_blocks.0")
    assert crash.value.outcome is Outcome.CRASH  # a crash stays a crash


def test_an_error_after_the_load_is_a_late_failure_whatever_its_type():
    from harness.cell.context import CheckContext

    ctx = CheckContext()
    with pytest.raises(LibraryError) as info, ctx.library_call(late=True):
        raise ValueError("image embeddings have width 1280, expected 1024")
    assert info.value.outcome is Outcome.CRASH
    assert "late failure" in info.value.reason


def test_outcome_of_sources():
    assert outcome_of(None)[0] is Outcome.OK
    assert outcome_of(Unsupported("no FluxPipeline"))[0] is Outcome.UNSUPPORTED
    assert outcome_of(NotRun("no CUDA"))[0] is Outcome.NOT_RUN
    assert outcome_of(Finding(Outcome.DROPPED_KEYS, "x"))[0] is Outcome.DROPPED_KEYS
    assert (
        outcome_of(LibraryError(KeyError("k"), Outcome.CRASH, "bare KeyError"))[0] is Outcome.CRASH
    )
    assert outcome_of(CheckTimeout("slow"))[0] is Outcome.TIMEOUT
    # anything else escaping a check is our own bug, never a library finding
    assert outcome_of(KeyError("oops"))[0] is Outcome.HARNESS_ERROR


def test_exception_groups_prefer_library_findings():
    group = BaseExceptionGroup("two", [KeyError("ours"), Finding(Outcome.WRONG_RESULT, "delta")])
    assert outcome_of(group)[0] is Outcome.WRONG_RESULT


@pytest.mark.parametrize("neutral", [NotRun("no CUDA"), Unsupported("no FluxPipeline")])
def test_in_an_exception_group_a_finding_wins_over_not_run_and_unsupported(neutral):
    group = BaseExceptionGroup("two", [neutral, Finding(Outcome.STALE_STATE, "old encoder")])
    assert outcome_of(group)[0] is Outcome.STALE_STATE


def test_a_module_path_inside_its_component_names_the_case():
    msg = 'While copying the parameter named "down_blocks.0.attentions.0.proj_in.lora_A.weight"'
    name = "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"
    assert classify_exception(RuntimeError(msg), [name])[0] is Outcome.CLEAR_ERROR
    tail = ValueError("size mismatch for attn1.to_q")
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"
    assert classify_exception(tail, [key])[0] is Outcome.UNCLEAR_ERROR
