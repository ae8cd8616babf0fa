"""Shrunk machine sequence -> standalone reproduction script (``compat.repro(body)``).

The script imports torch / diffusers / peft / safetensors only (plus transformers, which
diffusers' pipelines need for their text encoders). It rebuilds the tiny pipeline from the
component configs of this cell (seeded), writes each LoRA of the sequence from a key table
(seeded random tensors), replays the steps and, after each one, compares the effective
weight of every targeted module with ``pristine + sum(weight * alpha / rank * up @ down)``
as the pure model says. Exit 1 while the mismatch (or a crash) reproduces, 0 otherwise.
IP-Adapter steps are listed but not replayed (the weight invariant does not cover them).
"""

from __future__ import annotations

import json
from typing import Any

from harness.inputs.checkpoints.lora.formats import FORMATS
from harness.inputs.models.build import module_components


def _component_table(pipe: Any) -> dict[str, Any]:
    """name -> [kind, class, config class, config] for every torch component + scheduler."""
    out: dict[str, Any] = {}
    for name, module in module_components(dict(pipe.components)).items():
        cls = type(module)
        if cls.__module__.startswith("diffusers"):
            out[name] = ["diffusers", cls.__name__, None, dict(module.config)]
        else:
            config = module.config
            out[name] = ["transformers", cls.__name__, type(config).__name__, config.to_dict()]
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is not None:
        out["scheduler"] = ["diffusers", type(scheduler).__name__, None, dict(scheduler.config)]
    return out


def _file_table(lora: Any, scene: Any) -> dict[str, Any]:
    """A LoRA file as data: keys with shapes, alpha values, and per stem the modules (with
    output rows) its up @ down lands in."""
    fmt = FORMATS[lora.spec.fmt]
    keys = {k: list(v.shape) for k, v in lora.built.state_dict.items() if not k.endswith("alpha")}
    alphas = {k: float(v) for k, v in lora.built.state_dict.items() if k.endswith("alpha")}
    stems: dict[str, Any] = {}
    for key in keys:
        if not key.endswith(fmt.suffixes.down):
            continue
        stem = key[: -len(fmt.suffixes.down)]
        stems[stem] = {
            "down": key,
            "up": stem + fmt.suffixes.up,
            "alpha": (stem + fmt.suffixes.alpha) if fmt.suffixes.alpha else None,
            "targets": [],
        }
    for (component, module), terms in lora.ref.terms.items():
        for term in terms:
            down_key = next(k for k in term.keys if k.endswith(fmt.suffixes.down))
            stem = down_key[: -len(fmt.suffixes.down)]
            full = lora.built.state_dict[stem + fmt.suffixes.up]
            rows = _rows_of(full, term.up)
            real = scene.layout[component].real_path(module)
            stems[stem]["targets"].append([component, real, module, rows[0], rows[1]])
    return {"keys": keys, "alphas": alphas, "stems": stems}


def _rows_of(full: Any, part: Any) -> tuple[int, int]:
    """Which row block of the file's up matrix a reference term uses."""
    import torch

    n = part.shape[0]
    full64 = full.detach().to("cpu", torch.float64)
    for start in range(0, full64.shape[0] - n + 1):
        if torch.equal(full64[start : start + n], part):
            return start, start + n
    raise ValueError("term rows not found in the up matrix")


def script(ctx: Any, steps: list[dict[str, Any]]) -> str:
    """The standalone script replaying ``steps`` (from ``MachineContext.runs``)."""
    from harness.scenarios.lifecycle.machine import LoraSpec

    scene, bank = ctx.scene, ctx.bank
    pipe = scene.fresh()
    files: dict[str, Any] = {}
    for step in steps:
        if step["op"] == "load":
            lora = bank.get(LoraSpec(**step["spec"]))
            files[lora.spec.content] = _file_table(lora, scene)
    modules = {
        f"{c}:{m}": [c, scene.layout[c].real_path(m)]
        for c in scene.layout
        for m in scene.modules(pipe, c)
    }
    data = {
        "pipeline": type(pipe).__name__,
        "components": _component_table(pipe),
        "files": files,
        "modules": modules,
        "steps": [
            {k: v for k, v in s.items() if k not in ("mismatch", "output_max_abs_diff")}
            for s in steps
        ],
    }
    blob = json.dumps(data, sort_keys=True, default=str)
    return TEMPLATE.replace("@DATA@", repr(blob))


TEMPLATE = r'''
"""Replays a shrunk adapter-lifecycle sequence and checks the effective LoRA weights
after every step against pristine + sum(weight * alpha / rank * up @ down)."""
import inspect
import json
import sys
import tempfile
import traceback
import zlib

import diffusers
import torch
import transformers

DATA = json.loads(@DATA@)


def build_pipeline():
    parts = {}
    for name, (kind, cls, config_cls, config) in sorted(DATA["components"].items()):
        torch.manual_seed(0)
        if kind == "diffusers":
            parts[name] = getattr(diffusers, cls).from_config(config)
        else:
            config = {k: v for k, v in config.items() if k not in ("transformers_version",)}
            parts[name] = getattr(transformers, cls)(getattr(transformers, config_cls)(**config))
            parts[name].eval()
    pipeline_cls = getattr(diffusers, DATA["pipeline"])
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    for name in ("tokenizer", "tokenizer_2", "safety_checker", "feature_extractor", "image_encoder"):
        if name in accepted and name not in parts:
            parts[name] = None
    if "requires_safety_checker" in accepted:
        parts["requires_safety_checker"] = False
    return pipeline_cls(**{k: v for k, v in parts.items() if k in accepted})


def lora_file(content):
    table = DATA["files"][content]
    gen = torch.Generator().manual_seed(zlib.crc32(content.encode()))
    sd = {}
    for key, shape in sorted(table["keys"].items()):
        if ".lora_down." in key or ".lora_A." in key or key.endswith(".down.weight"):
            sd[key] = torch.randn(shape, generator=gen) / (shape[1] ** 0.5)
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.1
    for key, value in table["alphas"].items():
        sd[key] = torch.tensor(value)
    return sd


FILES = {}


def delta(content, module_key):
    """Expected delta of one file on one module, from the file alone."""
    sd, table = FILES[content]
    total = None
    for stem in table["stems"].values():
        for component, real, canonical, r0, r1 in stem["targets"]:
            if f"{component}:{canonical}" != module_key:
                continue
            down = sd[stem["down"]].double()
            up = sd[stem["up"]].double()[r0:r1]
            rank = down.shape[0]
            alpha = float(sd[stem["alpha"]]) if stem["alpha"] and stem["alpha"] in sd else rank
            if down.dim() == 4:
                d = torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down) * (alpha / rank)
            else:
                d = (up @ down) * (alpha / rank)
            total = d if total is None else total + d
    return total


@torch.no_grad()
def effective(module):
    base = getattr(module, "base_layer", module)
    w = base.weight
    module.eval()
    if isinstance(base, torch.nn.Conv2d):
        n = base.in_channels
        eye = torch.eye(n, dtype=w.dtype).reshape(n, n, 1, 1)
        out = (module(eye) - module(torch.zeros(1, n, 1, 1)))[:, :, 0, 0]
        return out.T.reshape(w.shape[0], n, 1, 1).double()
    n = w.shape[1]
    return (module(torch.eye(n, dtype=w.dtype)) - module(torch.zeros(1, n))).T.double()


def observe(pipe):
    return {
        key: effective(getattr(pipe, comp).get_submodule(path))
        for key, (comp, path) in DATA["modules"].items()
    }


def check(pipe, base, expected, index, what):
    observed = observe(pipe)
    bad = []
    for key, obs in observed.items():
        exp = base[key].clone()
        for content, weight in expected.get(key, []):
            exp = exp + weight * delta(content, key).reshape(exp.shape)
        err = float((obs - exp).abs().max())
        tol = 1e-6 + 2e-5 * (float(exp.abs().max()) + float(base[key].abs().max()))
        if err > tol:
            bad.append(f"{key} (err {err:.3g})")
    if bad:
        print(f"REPRODUCED after step {index} ({what}): {len(bad)} module(s) differ: {bad[:5]}")
        sys.exit(1)


def main():
    pipe = build_pipeline()
    base = observe(pipe)
    tmp = tempfile.mkdtemp()
    for content in DATA["files"]:
        FILES[content] = (lora_file(content), DATA["files"][content])
    for index, step in enumerate(DATA["steps"], 1):
        op = step["op"]
        what = json.dumps({k: v for k, v in step.items() if k != "expected"})[:200]
        print(f"step {index}: {what}")
        try:
            if op == "load":
                sd = dict(FILES[LoraSpecContent(step["spec"])][0])
                kw = {"hotswap": True} if step.get("hotswap") else {}
                pipe.load_lora_weights(sd, adapter_name=step["name"], **kw)
            elif op == "enable_hotswap":
                pipe.enable_lora_hotswap(target_rank=step["target_rank"])
            elif op == "set_adapters":
                pipe.set_adapters(step["names"], step["weights"])
            elif op == "fuse":
                pipe.fuse_lora(**step["kwargs"])
            elif op == "unfuse":
                pipe.unfuse_lora(**step["kwargs"])
            elif op == "disable":
                pipe.disable_lora()
            elif op == "enable":
                pipe.enable_lora()
            elif op == "delete":
                pipe.delete_adapters(step["name"])
            elif op == "unload":
                pipe.unload_lora_weights()
            elif op == "set_lora_device":
                pipe.set_lora_device(step["names"], step["device"])
            elif op == "save_reload":
                from peft.utils import get_peft_model_state_dict

                kw = {}
                for c in step.get("components", []):
                    module = getattr(pipe, c.replace("_lora_layers", "").replace("_lora_adapter_metadata", ""))
                    if c.endswith("_lora_layers"):
                        kw[c] = get_peft_model_state_dict(module, adapter_name=step["source"])
                    else:
                        kw[c] = module.peft_config[step["source"]].to_dict()
                type(pipe).save_lora_weights(tmp, weight_name="a.safetensors", **kw)
                pipe.load_lora_weights(tmp, weight_name="a.safetensors", adapter_name=step["name"])
            else:
                print(f"  (not replayed: {op})")
                continue
        except Exception:
            if "rejected" in step:
                print("  rejected, as in the harness run")
                continue
            traceback.print_exc()
            print(f"REPRODUCED: step {index} raised")
            sys.exit(1)
        if "rejected" in step:
            print("  (the harness run saw a clear rejection here; this run did not)")
        check(pipe, base, step.get("expected", {}), index, what)
    print("not reproduced: every step matched the model")
    sys.exit(0)


def LoraSpecContent(spec):
    alpha = "-" if spec["alpha"] is None else f"{spec['alpha']:g}"
    return f"{spec['fmt']}/{spec['part']}/r{spec['rank']}/a{alpha}/s{spec['seed']}"


if __name__ == "__main__":
    main()
'''
