"""``adapter-compat matrix``: print the matrix, or refresh the committed companion pins."""

from __future__ import annotations

import argparse

from harness.matrix import cells


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "matrix",
        help="print the version matrix or refresh its pins",
        description="Print the cells (diffusers x torch) with their companion pins, or re-resolve the pins.",
    )
    parser.add_argument("--cells", default="all", help="which cells (default: all)")
    parser.add_argument(
        "--refresh", action="store_true", help="re-resolve companion pins with uv --exclude-newer"
    )
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output (e.g. for a CI job matrix)"
    )
    parser.set_defaults(func=run)


PINNED = ("transformers", "peft", "huggingface-hub", "accelerate", "safetensors", "numpy")


def lock_pins(cell: cells.Cell) -> dict[str, str]:
    pins = {}
    if cell.lock_file.exists():
        for line in cell.lock_file.read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                name, version = line.split("==", 1)
                pins[name.strip().lower()] = version.strip()
    return pins


def run(args: argparse.Namespace) -> int:
    chosen = cells.select_cells(args.cells)
    if args.refresh:
        from harness.matrix import pins

        written = pins.refresh(chosen)
        return 0 if len(written) == len(chosen) else 1
    if args.json:
        import json

        rows = [
            {"session": c.name, "diffusers": c.diffusers, "released": c.released, "torch": c.torch.label,
             "torch_source": c.torch.kind, "pins": lock_pins(c)}
            for c in chosen
        ]  # fmt: skip
        print(json.dumps(rows, indent=1))
        return 0
    defaults = set(cells.matrix_data()["default_cells"])
    header = f"{'session':<26}{'diffusers':<11}{'released':<12}{'torch':<14}" + "".join(
        f"{p:<16}" for p in PINNED
    )
    print(header)
    for c in chosen:
        pins_ = lock_pins(c)
        mark = "*" if c.diffusers in defaults else " "
        torch = f"{c.torch.label} ({c.torch.kind})"
        print(
            f"{c.name + mark:<26}{c.diffusers:<11}{c.released[:10]:<12}{torch:<14}"
            + "".join(f"{pins_.get(p, '-'):<16}" for p in PINNED)
        )
    print("* = in the default set run by a bare `nox`")
    return 0
