"""Export torchvision's reference networks as ONNX files with random weights.

Optional: prmodel builds the same networks without torch (`prmodel networks build reference
--out benchmarks/networks`, docs/networks.md); this script stays to compare those builders
with torchvision's own export.

Needs the zoo extra (torch, torchvision): pip install torch==2.14.1 torchvision==0.29.1.
Run by hand, e.g. from a separate venv that has torch and prmodel (installed with --no-deps):

    python benchmarks/export_zoo.py                      # all into benchmarks/networks/
    python benchmarks/export_zoo.py --out /tmp/nets --names resnet18 mobilenet_v2

Prints one row per network and writes the same facts to benchmarks/results/export_zoo.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from prmodel.errors import PrmodelError
from prmodel.targets.cpu import machine_info
from prmodel.zoo import REFERENCE_NETWORKS, ExportedNetwork, export_all

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "export_zoo.json"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "networks", help="output folder")
    parser.add_argument(
        "--names", nargs="+", default=None, metavar="NAME", help=", ".join(REFERENCE_NETWORKS)
    )
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export exporter")
    return parser.parse_args(argv)


def _row(result: ExportedNetwork) -> str:
    if not result.ok:
        return f"{result.name:<20} FAILED  {result.error}"
    return (
        f"{result.name:<20} {result.size_bytes / 1e6:8.1f} MB {result.nodes:6d} nodes "
        f"{result.parameters / 1e6:7.2f} M params {result.seconds:6.1f} s"
    )


def _machine() -> dict[str, Any]:
    return machine_info(libraries=("torch", "torchvision", "onnx"))


def _record(results: list[ExportedNetwork], args: argparse.Namespace) -> dict[str, object]:
    import torch
    import torchvision

    return {
        "machine": _machine(),
        "settings": {
            "input_shape": [1, 3, args.input_size, args.input_size],
            "opset": 17,
            "exporter": "dynamo" if args.dynamo else "torchscript",
            "weights": "random (weights=None, seed 0)",
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "networks": [
            {
                "name": r.name,
                "file": r.path.name,
                "ok": r.ok,
                "error": r.error,
                "size_bytes": r.size_bytes,
                "nodes": r.nodes,
                "parameters": r.parameters,
                "op_counts": r.op_counts,
                "export_seconds": r.seconds,
            }
            for r in results
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        results = export_all(
            args.out, names=args.names, input_size=args.input_size, dynamo=args.dynamo
        )
    except PrmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(_row(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(_record(results, args), indent=2) + "\n")
    print(f"{sum(r.ok for r in results)}/{len(results)} exported into {args.out}; see {RESULTS}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
