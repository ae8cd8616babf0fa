"""Generated damage (hypothesis): bit flips, truncation points, header field rewrites.

Every example is judged by the reference reader exactly like a table case; the check
passes when every example behaves as the reference says. Derandomized profiles make every
cell try the same examples; no shrinking (a failing example is reported as found, which
keeps a red cell's time bounded).
"""

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

# aliased as ``mf``: the bodies below feed hypothesis' derandomized seed (it hashes their
# source), so they keep their text and every cell keeps trying the same examples
from harness.inputs.malformed import files as mf
from harness.scenarios import robustness as rp

#: Paths the generated families run through: one LoRA, one IP-Adapter, one plain reader.
GENERATED_PATHS = ("lora", "ip-adapter", "state-dict")
NO_SHRINK = settings(phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)


def _examples(compat):
    compat.detail(examples=0)

    def count():
        compat.details["examples"] += 1

    return count


@pytest.mark.parametrize("path", GENERATED_PATHS)
def test_bit_flips(compat, robust_env, path):
    compat.param(loader=path, family="bit-flip")
    original = robust_env.blob_for(path)
    start, end = mf.header_span(original)
    regions = {"length": (0, start), "header": (start, end), "data": (end, len(original))}
    count = _examples(compat)

    @NO_SHRINK
    @given(
        region=st.sampled_from(sorted(regions)),
        where=st.floats(0, 1, exclude_max=True),
        bit=st.integers(0, 7),
    )
    def check(region, where, bit):
        count()
        lo, hi = regions[region]
        byte = lo + int(where * (hi - lo))
        blob = mf.flip_bit(original, byte * 8 + bit)
        label = f"flip bit {bit} of byte {byte} ({region})"
        rp.run_example(
            compat,
            lambda ctx: rp.run_file_case(ctx, robust_env, path, blob, original, label),
            label,
        )

    check()


@pytest.mark.parametrize("path", GENERATED_PATHS)
def test_truncation(compat, robust_env, path):
    compat.param(loader=path, family="truncation")
    original = robust_env.blob_for(path)
    count = _examples(compat)

    @NO_SHRINK
    @given(at=st.integers(0, len(original) - 1))
    def check(at):
        count()
        blob = mf.truncate(original, at)
        label = f"truncated to {at} of {len(original)} bytes"
        rp.run_example(
            compat,
            lambda ctx: rp.run_file_case(ctx, robust_env, path, blob, original, label),
            label,
        )

    check()


def _field_values(data_len):
    return st.one_of(
        st.tuples(st.just("dtype"), st.sampled_from(mf.DTYPE_CHOICES)),
        st.tuples(st.just("shape"), st.lists(st.integers(0, 64), max_size=3)),
        st.tuples(
            st.just("data_offsets"),
            st.lists(st.integers(0, data_len + 64), min_size=2, max_size=2),
        ),
    )


@pytest.mark.parametrize("path", GENERATED_PATHS)
def test_header_rewrites(compat, robust_env, path):
    compat.param(loader=path, family="header-rewrite")
    original = robust_env.blob_for(path)
    data_len = len(original) - mf.header_span(original)[1]
    count = _examples(compat)

    @NO_SHRINK
    @given(entry=st.integers(0, 63), change=_field_values(data_len))
    def check(entry, change):
        count()
        field_name, value = change
        blob = mf.mutate_header(original, entry, field_name, value)
        label = f"entry {entry}: {field_name} = {value!r}"
        rp.run_example(
            compat,
            lambda ctx: rp.run_file_case(ctx, robust_env, path, blob, original, label),
            label,
        )

    check()
