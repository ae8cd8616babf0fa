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
        (
            TypeError("load_model_dict_into_meta() got an unexpected keyword argument 'device'"),
            [],
            Outcome.CLEAR_ERROR,
        ),
        (SystemError("weird"), [], Outcome.CRASH),
    ],
)
def test_classify_library_exceptions(exc, names, outcome):
    assert classify_exception(exc, names)[0] is outcome


def test_format_errors_of_other_packages_are_clear():
    SafetensorError = type("SafetensorError", (Exception,), {})
    assert classify_exception(SafetensorError("header too large"))[0] is Outcome.CLEAR_ERROR


def test_names_match_on_key_suffix():
    exc = ValueError("no module for img_attn.qkv.lora_down.weight")
    assert (
        classify_exception(exc, ["lora_unet_double_blocks_0.img_attn.qkv.lora_down.weight"])[0]
        is Outcome.CLEAR_ERROR
    )


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
