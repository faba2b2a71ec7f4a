"""The ``networks`` commands: list and build the reference and held-out networks (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from prmodel.cli._common import JsonOption, console, err_console, print_json
from prmodel.cli._format import progress_bar, significant
from prmodel.cli._sweep import command_help
from prmodel.zoo import NETWORK_SETS, NetworkSpec, build_networks, describe, resolve_networks

NetworkArguments = Annotated[
    list[str] | None,
    typer.Argument(
        help="Sets (reference, held-out) or network names; default: both sets.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``networks`` group to ``app``."""
    group = typer.Typer(
        help="Reference and held-out networks, built as ONNX files without torch.",
        no_args_is_help=True,
    )
    group.command("list", help=command_help(list_networks))(list_networks)
    group.command("build", help=command_help(build))(build)
    app.add_typer(group, name="networks")


def list_networks(networks: NetworkArguments = None, json_output: JsonOption = False) -> None:
    """List the networks prmodel builds: name, set, architecture, input and size.

    The reference set is the 15 torchvision reference networks at their default settings;
    the held-out set is architectures, widths, resolutions and batch sizes outside it, for
    judging predictors on networks they never saw (docs/networks.md).

    Example: prmodel networks list held-out
    """
    facts = [describe(spec) for spec in resolve_networks(networks or list(NETWORK_SETS))]
    if json_output:
        print_json(facts)
        return
    for name in dict.fromkeys(item["set"] for item in facts):
        chosen = [item for item in facts if item["set"] == name]
        grid = Table(
            title=f"{name or 'other'} networks ({len(chosen)})",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        grid.add_column("network", no_wrap=True)
        grid.add_column("input", no_wrap=True)
        grid.add_column("params", justify="right", no_wrap=True)
        grid.add_column("builder: options", overflow="fold")
        for item in chosen:
            options = ", ".join(f"{key}={value}" for key, value in item["kwargs"].items())
            grid.add_row(
                item["name"],
                "x".join(map(str, item["input_shape"])),
                f"{significant(item['parameters'] / 1e6)} M",
                f"{item['builder']}: {options}" if options else item["builder"],
            )
        console.print(grid)


def build(
    networks: NetworkArguments = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder to write <name>.onnx into.", file_okay=False),
    ] = Path("networks"),
    json_output: JsonOption = False,
) -> None:
    """Write networks as ONNX files with seeded random weights, without torch.

    Files already built with the same settings are kept (a <name>.settings.json beside each
    records them), so a second run writes nothing. The files are what torchvision's ONNX
    export gives in eval mode (opset 17, batch-norm folded), from onnx and numpy only.

    Example: prmodel networks build held-out --out networks/held-out
    """
    specs = resolve_networks(networks or list(NETWORK_SETS))
    written: list[tuple[str, Path, bool]] = []
    with progress_bar(f"building {len(specs)} networks", len(specs), console=err_console) as update:

        def done(spec: NetworkSpec, path: Path, built: bool) -> None:
            written.append((spec.name, path, built))
            update(len(written))

        build_networks(specs, out, on_network=done)
    if json_output:
        print_json(
            [
                {"name": name, "path": str(path), "built": built, "bytes": path.stat().st_size}
                for name, path, built in written
            ]
        )
        return
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    grid.add_column("network", overflow="fold")
    grid.add_column("file", overflow="fold")
    grid.add_column("", no_wrap=True)
    grid.add_column("size", justify="right", no_wrap=True)
    for name, path, built in written:
        size = f"{significant(path.stat().st_size / 1e6)} MB"
        grid.add_row(name, path.name, "built" if built else "kept", size)
    console.print(grid)
    count = sum(built for _, _, built in written)
    console.print(f"{count} built, {len(written) - count} already current, in {out}")
