"""``adapter-compat convert-ip-adapter TRAIN_CKPT OUT``: training checkpoint -> release file.

Thin on purpose: argument checks and messages here, the work in
:mod:`harness.convert.ip_adapter`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DESCRIPTION = """\
Convert an IP-Adapter *training* checkpoint (keys unet.*, image_proj_model.*,
adapter_modules.<i>.*) to the release layout diffusers' load_ip_adapter reads
(image_proj / ip_adapter, attention-processor numbering 1, 3, 5, ... of the target UNet),
FaceID LoRA keys included. unet.* keys are dropped.

The result is checked against a template — the expected key/shape layout of the target:
--arch sd15|sdxl derives it from the real UNet (widths the checkpoint itself fixes, like
the image encoder width, are read from it), --template uses a release file you trust.
The report lists missing keys, unexpected keys and shape mismatches; with any of them the
file is NOT written and the exit status is 1, unless --force."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert-ip-adapter",
        help="convert a trained IP-Adapter checkpoint to the release layout, with a report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "train_ckpt",
        type=Path,
        metavar="TRAIN_CKPT",
        help="training checkpoint (.safetensors, or .bin read with weights_only)",
    )
    parser.add_argument(
        "out", type=Path, metavar="OUT", help="release file to write (.safetensors or .bin)"
    )
    parser.add_argument(
        "--arch",
        choices=("sd15", "sdxl"),
        default=None,
        help="target UNet whose layout the template follows (default sd15 without --template)",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=None,
        metavar="FILE",
        help="a release checkpoint whose keys and shapes are the template",
    )
    parser.add_argument(
        "--format",
        choices=("bin", "safetensors"),
        default=None,
        help="output format (default: from OUT's suffix)",
    )
    parser.add_argument(
        "--numbering",
        choices=("auto", "processor", "cross"),
        default="auto",
        help="adapter_modules index meaning: every processor, or cross-attention ones only",
    )
    parser.add_argument(
        "--force", action="store_true", help="write the file even when the report lists problems"
    )
    parser.set_defaults(func=run)


def _output_format(out: Path, fmt: str | None) -> str:
    suffix = out.suffix.lstrip(".")
    if fmt is None:
        if suffix not in ("bin", "safetensors"):
            raise UsageError(
                f"cannot tell the format of {out}: name it *.safetensors or *.bin, or pass --format"
            )
        return suffix
    if suffix in ("bin", "safetensors") and suffix != fmt:
        raise UsageError(
            f"--format {fmt} contradicts the output name {out.name}; rename it or drop --format"
        )
    return fmt


def run(args: argparse.Namespace) -> int:
    if not args.train_ckpt.is_file():
        raise UsageError(f"training checkpoint {args.train_ckpt} does not exist")
    if args.arch and args.template:
        raise UsageError("give --arch or --template, not both (the template fixes the layout)")
    if args.template is not None and not args.template.is_file():
        raise UsageError(f"template {args.template} does not exist")
    fmt = _output_format(args.out, args.format)
    if not args.out.parent.exists():
        raise UsageError(f"output folder {args.out.parent} does not exist")
    try:
        from harness.convert import ip_adapter as conv
        from harness.inputs.checkpoints.ip_adapter.files import load_release, save_release
    except ImportError as exc:  # torch / safetensors missing in this environment
        raise UsageError(
            f"convert-ip-adapter needs torch and safetensors ({exc.name} is missing)"
        ) from exc
    try:
        state = conv.read_training(args.train_ckpt)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise UsageError(
            f"cannot read {args.train_ckpt}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc
    if args.template is not None:
        try:
            template = conv.template_from_release(load_release(args.template))
        except Exception as exc:  # noqa: BLE001
            raise UsageError(
                f"cannot read template {args.template}: {exc}".splitlines()[0]
            ) from exc
        release, report = conv.convert(
            state,
            template=template,
            numbering=args.numbering,
            template_name=f"file {args.template.name}",
        )
    else:
        arch = args.arch or "sd15"
        release, report = conv.convert(
            state,
            target=conv.arch_target(arch),
            numbering=args.numbering,
            template_name=f"{arch} UNet",
        )
    print(report.render())
    if not report.ok and not args.force:
        print(f"not written: {args.out} (fix the checkpoint, or pass --force to write it anyway)")
        return 1
    out = args.out if args.out.suffix == f".{fmt}" else args.out.with_name(f"{args.out.name}.{fmt}")
    save_release(release, out)
    print(f"written: {out}" + ("" if report.ok else " (despite the problems above: --force)"))
    return 0
