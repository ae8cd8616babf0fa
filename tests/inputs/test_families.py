"""The family axis: the mixin probe against the installed diffusers (the newest cell's),
an unknown mixin reported by the suite's inventory row, and the family files' writer
against the independent reference (alpha / rank from the header metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from harness.inputs.checkpoints.lora.layouts import Layer  # noqa: E402
from harness.inputs.families.lora_files import ADAPTER_METADATA_KEY, write_lora  # noqa: E402
from harness.inputs.families.probe import probe, scan_pipelines, unknown_mixins  # noqa: E402
from harness.inputs.families.table import FAMILY_LIST, known_mixins  # noqa: E402
from harness.oracles.lora_peft import adapter_metadata, peft_reference  # noqa: E402
from tests.inner_suite import run_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROBE_ROW = ROOT / "suites" / "families" / "test_probe.py"
FAKE = "ZzzTestLoraLoaderMixin"


@pytest.fixture(scope="module")
def found() -> dict:
    return probe()


@pytest.mark.parametrize("family", FAMILY_LIST, ids=lambda f: f.name)
def test_probe_finds_every_table_family(found: dict, family) -> None:
    """0.42.1 has every family of the table: its mixin, the table's pipeline among those
    inheriting it (modular ones included), the table's component class, and the attribute:
    the mixin's ``transformer_name`` or another component it loads (MiniMax-H3's
    ``transformer_ref``, Anima's ``text_conditioner``)."""
    info = found.get(family.mixin)
    assert info is not None, sorted(found)
    assert family.pipeline in info.pipelines, info.as_dict()
    assert family.denoiser in info.denoisers, info.as_dict()
    assert family.attr == info.attr or family.attr in info.loadable, info.as_dict()


def test_probe_finds_the_zoo_mixins(found: dict) -> None:
    for name in ("StableDiffusionLoraLoaderMixin", "FluxLoraLoaderMixin", "SD3LoraLoaderMixin"):
        assert name in found
    assert "FluxPipeline" in found["FluxLoraLoaderMixin"].pipelines
    assert found["StableDiffusionLoraLoaderMixin"].attr == "unet"


def test_unknown_mixin_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A mixin the table does not know: listed by ``unknown_mixins`` and by the suite's
    inventory row (NOT_RUN naming it); without it the row does not name it."""
    from diffusers.loaders import lora_pipeline

    clean = run_checks(PROBE_ROW, "unknown_mixins", tmp_path / "clean.jsonl")
    assert FAKE not in clean[0]["message"]
    monkeypatch.setattr(
        lora_pipeline, FAKE, type(FAKE, (), {"transformer_name": "transformer"}), raising=False
    )
    assert FAKE in unknown_mixins(probe(), known_mixins())
    planted = run_checks(PROBE_ROW, "unknown_mixins", tmp_path / "planted.jsonl")
    assert planted[0]["observed"] == "NOT_RUN", planted[0]
    assert FAKE in planted[0]["message"]
    assert planted[0]["details"]["mixins"][FAKE]["attr"] == "transformer"


def test_scan_reads_multiline_bases_and_denoiser(tmp_path: Path) -> None:
    source = tmp_path / "pipeline_zzz.py"
    source.write_text(
        "class ZzzPipeline(\n    DiffusionPipeline,\n    loaders.ZzzLoraLoaderMixin,\n):\n"
        "    def __init__(self, transformer: models.ZzzTransformer, vae=None):\n        pass\n"
    )
    infos = scan_pipelines([source], ["ZzzLoraLoaderMixin", "OtherLoraLoaderMixin"])
    assert infos["ZzzLoraLoaderMixin"].pipelines == ["ZzzPipeline"]
    assert infos["ZzzLoraLoaderMixin"].denoisers == ["ZzzTransformer"]
    assert infos["OtherLoraLoaderMixin"].pipelines == []


def test_writer_and_reference_agree_on_alpha_and_strays() -> None:
    """alpha 2 / rank 4 read back from the header; no header -> scale 1; a stray pair and
    an omitted module are where they belong."""
    targets = {"blocks.0.attn.to_q": Layer(8, 8), "blocks.0.attn.to_k": Layer(8, 16)}
    built = write_lora(
        "transformer", targets, rank=4, alpha=2.0, omit=("blocks.0.attn.to_k",), stray=1
    )
    meta = adapter_metadata(built.header, ADAPTER_METADATA_KEY)
    assert json.loads(built.header[ADAPTER_METADATA_KEY])["transformer.lora_alpha"] == 2.0
    ref = peft_reference(built.state_dict, "transformer", targets, meta)
    assert ref.modules() == [("transformer", "blocks.0.attn.to_q")]
    assert ref.terms[("transformer", "blocks.0.attn.to_q")][0].scale == 0.5
    assert sorted(ref.unknown_keys) == sorted(built.stray_keys)
    plain = write_lora("transformer", targets, rank=4, alpha=None)
    assert plain.header is None
    ref = peft_reference(plain.state_dict, "transformer", targets, None)
    assert {t.scale for ts in ref.terms.values() for t in ts} == {1.0}
