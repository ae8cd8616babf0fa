"""The LoKr reference against hand-computed Kronecker products on a made-up two-module
model: the factor forms, LyCORIS's scale rules (alpha / rank only with a low-rank pair,
none for whole factors, a missing or zero alpha = rank), fused rows, and keys it cannot
place. No diffusers needed."""

from __future__ import annotations

import torch

from harness.inputs.checkpoints.lora.layouts import Layer
from harness.inputs.families.layouts import Rule
from harness.inputs.families.lokr import LokrLayout
from harness.oracles.lokr import lokr_reference, lokr_scale

#: Two 4 x 4 Linears ``blk.0.q`` / ``blk.0.k``, and a file module ``blk.{i}.qk`` fused over
#: both (8 x 4), plus a lone ``blk.{i}.q``.
LAYERS = {"blk.0.q": Layer(4, 4), "blk.0.k": Layer(4, 4)}
LAYOUT = LokrLayout(
    family="toy",
    name="toy",
    trainer="test",
    prefix="m.",
    flat=False,
    alpha=True,
    alpha_always=False,
    forms=("full", "lowrank"),
    factor=-1,
    rules=(Rule("blk.{i}.q", ("blk.{i}.q",)), Rule("blk.{i}.qk", ("blk.{i}.q", "blk.{i}.k"))),
    partial=("blk.0.q", ("blk.0.q",)),
    stray="blk.0.bogus0",
    converter="",
)
W1 = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
W2 = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
#: kron(W1, W2) written out by hand: block (i, j) = W1[i, j] * W2.
KRON = torch.tensor(
    [
        [1.0, 0.0, 2.0, 0.0],
        [2.0, 1.0, 4.0, 2.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 2.0, 1.0],
    ],
    dtype=torch.float64,
)
#: W2 as a rank-1 pair: [[1], [2]] @ [[1, 0]] = [[1, 0], [2, 0]]; kron(W1, that) by hand.
W2_A, W2_B = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0, 0.0]])
KRON_LOW = torch.tensor(
    [
        [1.0, 0.0, 2.0, 0.0],
        [2.0, 0.0, 4.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 2.0, 0.0],
    ],
    dtype=torch.float64,
)


def delta(sd: dict, module: str = "blk.0.q") -> torch.Tensor:
    return lokr_reference(sd, LAYOUT, "transformer", LAYERS).delta("transformer", module)


def test_whole_factors_ignore_alpha() -> None:
    sd = {"m.blk.0.q.lokr_w1": W1, "m.blk.0.q.lokr_w2": W2, "m.blk.0.q.alpha": torch.tensor(7.0)}
    torch.testing.assert_close(delta(sd), KRON)


def test_low_rank_w2_scales_by_alpha_over_rank() -> None:
    sd = {
        "m.blk.0.q.lokr_w1": W1,
        "m.blk.0.q.lokr_w2_a": W2_A,
        "m.blk.0.q.lokr_w2_b": W2_B,
        "m.blk.0.q.alpha": torch.tensor(0.5),
    }
    torch.testing.assert_close(delta(sd), 0.5 * KRON_LOW)  # alpha 0.5 / rank 1
    del sd["m.blk.0.q.alpha"]  # no alpha: alpha = rank, scale 1
    torch.testing.assert_close(delta(sd), KRON_LOW)
    sd["m.blk.0.q.alpha"] = torch.tensor(0.0)  # LyCORIS: alpha 0 means rank
    torch.testing.assert_close(delta(sd), KRON_LOW)


def test_both_factors_low_rank() -> None:
    sd = {
        "m.blk.0.q.lokr_w1_a": torch.tensor([[1.0], [0.0]]),
        "m.blk.0.q.lokr_w1_b": torch.tensor([[3.0, 1.0]]),  # W1 = [[3, 1], [0, 0]]
        "m.blk.0.q.lokr_w2_a": W2_A,
        "m.blk.0.q.lokr_w2_b": W2_B,
        "m.blk.0.q.alpha": torch.tensor(2.0),
    }
    by_hand = torch.tensor(
        [
            [3.0, 0.0, 1.0, 0.0],
            [6.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(delta(sd), 2.0 * by_hand)  # alpha 2 / rank 1


def test_scale_rules() -> None:
    assert lokr_scale((0, 0), 10000.0) == 1.0
    assert lokr_scale((0, 4), 2.0) == 0.5
    assert lokr_scale((4, 4), 8.0) == 2.0
    assert lokr_scale((0, 4), None) == 1.0
    assert lokr_scale((2, 4), 1.0) is None  # pairs of two ranks: no LoKr module


def test_fused_module_rows_split_over_its_parts() -> None:
    w1 = torch.tensor([[1.0], [-1.0]])  # 2 x 1: the fused width 8 = 2 x 4, input 4 = 1 x 4
    w2 = torch.arange(16.0).reshape(4, 4)
    sd = {"m.blk.0.qk.lokr_w1": w1, "m.blk.0.qk.lokr_w2": w2}
    ref = lokr_reference(sd, LAYOUT, "transformer", LAYERS)
    torch.testing.assert_close(ref.delta("transformer", "blk.0.q"), w2.double())
    torch.testing.assert_close(ref.delta("transformer", "blk.0.k"), -w2.double())
    assert ref.keys_for("transformer", "blk.0.k") == sorted(sd)


def test_keys_it_cannot_place() -> None:
    sd = {
        "m.blk.0.q.lokr_w1": W1,  # no w2: incomplete
        "m.blk.0.bogus0.lokr_w1": W1,  # a module the layout does not place
        "m.blk.0.bogus0.lokr_w2": W2,
        "m.blk.0.qk.lokr_w1": W1,  # 4 x 4 delta on an 8-row fused module: another model's
        "m.blk.0.qk.lokr_w2": W2,
    }
    ref = lokr_reference(sd, LAYOUT, "transformer", LAYERS)
    assert ref.terms == {}
    assert sorted(ref.unknown_keys) == sorted(sd)
