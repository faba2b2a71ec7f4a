"""Networks built on demand: torch-free ONNX builders of common architectures, the named
reference and held-out sets, tiny test networks, and an optional torchvision exporter.

The builders (:mod:`~prmodel.zoo.classic`, :mod:`~prmodel.zoo.mobile`,
:mod:`~prmodel.zoo.modern`) write, with onnx and numpy only, the graphs that torchvision's
models give through PyTorch's ONNX exporter in eval mode, with seeded random weights (nothing
is downloaded). :func:`reference_networks` names the reference set and :data:`HELD_OUT_SETS`
the held-out sets; :func:`build_networks` writes a set into a folder. The ``tiny_*`` networks
are small test networks. :func:`export_network` and :func:`export_all` export torchvision's
own models and need the optional ``zoo`` extra (torch, torchvision). See docs/networks.md.
"""

from prmodel.zoo.builder import IR_VERSION, OPSET, GraphBuilder, ZooError
from prmodel.zoo.classic import densenet, googlenet, resnet, squeezenet, vgg
from prmodel.zoo.mobile import efficientnet, mnasnet, mobilenet_v2, mobilenet_v3, shufflenet_v2
from prmodel.zoo.modern import convnext, regnet_y
from prmodel.zoo.sets import (
    ARCHITECTURES,
    HELD_OUT_SETS,
    NETWORK_SETS,
    NetworkSpec,
    all_held_out_networks,
    build_networks,
    describe,
    fifth_held_out_networks,
    fourth_held_out_networks,
    held_out_networks,
    network_spec,
    parameter_count,
    reference_networks,
    resolve_networks,
    second_held_out_networks,
    sixth_held_out_networks,
    third_held_out_networks,
)
from prmodel.zoo.tiny import TINY_NETWORKS, tiny_mobilenet, tiny_resnet, tiny_vgg
from prmodel.zoo.torchvision_export import (
    REFERENCE_NETWORKS,
    ZOO_INSTALL_HINT,
    ExportedNetwork,
    export_all,
    export_network,
)

__all__ = [
    "ARCHITECTURES",
    "HELD_OUT_SETS",
    "IR_VERSION",
    "NETWORK_SETS",
    "OPSET",
    "REFERENCE_NETWORKS",
    "TINY_NETWORKS",
    "ZOO_INSTALL_HINT",
    "ExportedNetwork",
    "GraphBuilder",
    "NetworkSpec",
    "ZooError",
    "all_held_out_networks",
    "build_networks",
    "convnext",
    "densenet",
    "describe",
    "efficientnet",
    "export_all",
    "export_network",
    "fifth_held_out_networks",
    "fourth_held_out_networks",
    "googlenet",
    "held_out_networks",
    "mnasnet",
    "mobilenet_v2",
    "mobilenet_v3",
    "network_spec",
    "parameter_count",
    "reference_networks",
    "regnet_y",
    "resnet",
    "resolve_networks",
    "second_held_out_networks",
    "shufflenet_v2",
    "sixth_held_out_networks",
    "squeezenet",
    "third_held_out_networks",
    "tiny_mobilenet",
    "tiny_resnet",
    "tiny_vgg",
    "vgg",
]
