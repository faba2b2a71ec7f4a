"""The in-memory SCALE-Sim adapter of full mode: its configuration and a patched layer run.

SCALE-Sim 3.0.0 and numpy >= 2.4: the memory system calls ``int(max(x))`` where ``x`` is a
list of one-element arrays, which numpy 2.4 refuses, and ``get_total_cycles()`` indexes a
method. prmodel does not patch SCALE-Sim or pin numpy; it drives ``single_layer_sim`` itself
(in memory, printing nothing, writing no files) and gives the scratchpad a DRAM read port and
an ofmap write buffer whose returned cycle arrays are flat (1-D, as SCALE-Sim's own Ramulator
read path already returns them), so every ``max`` sees scalars. Cycles are read from the
compute and memory systems directly, never from ``get_total_cycles()``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class ArraySpec(Protocol):
    """What SCALE-Sim is configured with: the array, its SRAMs and the DRAM bandwidth."""

    @property
    def rows(self) -> int: ...

    @property
    def cols(self) -> int: ...

    @property
    def dataflow(self) -> str: ...

    @property
    def ifmap_kb(self) -> int: ...

    @property
    def filter_kb(self) -> int: ...

    @property
    def ofmap_kb(self) -> int: ...

    @property
    def bandwidth(self) -> int: ...


def run_single_layer(array: ArraySpec, topology_row: list[str | int], batch: int) -> Any:
    """SCALE-Sim's ``single_layer_sim`` of one topology row, run in memory.

    Args:
        array: the array, SRAMs and bandwidth to simulate.
        topology_row: the layer as a SCALE-Sim topology row (one group of a grouped conv).
        batch: images streamed through the array as extra output pixels.

    Returns:
        The finished simulation, its report data computed.
    """
    # scalesim is optional (pip install 'prmodel[scalesim]'): only full mode needs it.
    from scalesim.layout_utils import layouts
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    parts = _scalesim_parts()
    topology = topologies()
    topology.load_layer_params_from_list("layer", topology_row)
    sim = single_layer_sim()
    sim.op_mat_obj = parts.BatchedOperands(batch)
    sim.memory_system = parts.scratchpad()
    sim.set_params(
        layer_id=0,
        config_obj=scale_config_of(array),
        topology_obj=topology,
        layout_obj=layouts(),
        verbose=False,
    )
    sim.run()
    sim.calc_report_data()
    return sim


def scale_config_of(array: ArraySpec) -> Any:
    """A SCALE-Sim ``scale_config`` for ``array`` (user bandwidth mode, one SRAM bank)."""
    # scalesim is optional: only full mode needs it.
    from scalesim.scale_config import scale_config

    config = scale_config()
    config.force_valid()
    config.set_arr_dims(rows=array.rows, cols=array.cols)
    config.set_dataflow(array.dataflow)
    config.set_buffer_sizes_kb(array.ifmap_kb, array.filter_kb, array.ofmap_kb)
    # USER bandwidth mode: the ofmap port takes `bandwidths`; the ifmap and filter ports take
    # their SRAM bank bandwidth, so all three get the one configured bandwidth. With custom
    # layouts off, banks only have to divide that bandwidth: one bank always does.
    config.use_user_bandwidth = True
    config.bandwidths = [array.bandwidth]
    config.ifmap_sram_bank_bandwidth = array.bandwidth
    config.filter_sram_bank_bandwidth = array.bandwidth
    config.ifmap_sram_bank_num = 1
    config.filter_sram_bank_num = 1
    return config


@dataclass(frozen=True)
class _ScaleSimParts:
    BatchedOperands: type
    scratchpad: Any


@functools.cache
def _scalesim_parts() -> _ScaleSimParts:
    """SCALE-Sim subclasses, defined on first use: scalesim is optional (full mode only)."""
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.memory.double_buffered_scratchpad_mem import double_buffered_scratchpad
    from scalesim.memory.read_port import read_port
    from scalesim.memory.write_buffer import write_buffer

    class FlatReadPort(read_port):
        """DRAM read port returning a flat cycle vector (numpy >= 2.4 fix, see module doc)."""

        def service_reads(self, incoming_requests_arr_np: Any, incoming_cycles_arr: Any) -> Any:
            return np.ravel(super().service_reads(incoming_requests_arr_np, incoming_cycles_arr))

    class FlatWriteBuffer(write_buffer):
        """Ofmap write buffer returning a flat cycle vector (numpy >= 2.4 fix)."""

        def service_writes(self, incoming_requests_arr_np: Any, incoming_cycles_arr_np: Any) -> Any:
            cycles = super().service_writes(incoming_requests_arr_np, incoming_cycles_arr_np)
            return np.ravel(cycles)

    class BatchedOperands(operand_matrix):
        """Operand matrices of ``batch`` images: each image's im2col rows with its own addresses."""

        def __init__(self, batch: int) -> None:
            super().__init__()
            self.images = batch

        def _stack(self, one_image: Any, words_per_image: int) -> Any:
            if self.images == 1:
                return one_image
            valid = one_image >= 0  # -1 marks "no request" and must stay -1
            return np.concatenate(
                [np.where(valid, one_image + n * words_per_image, -1) for n in range(self.images)]
            )

        def get_ifmap_matrix(self) -> tuple[int, Any]:
            code, one = super().get_ifmap_matrix()
            words = self.ifmap_rows * self.ifmap_cols * self.num_input_channels
            return code, self._stack(one, words)

        def get_ofmap_matrix(self) -> tuple[int, Any]:
            code, one = super().get_ofmap_matrix()
            return code, self._stack(one, self.ofmap_px_per_filt * self.num_filters)

    def scratchpad() -> Any:
        memory = double_buffered_scratchpad()
        # The read buffers are rebuilt in set_params, but they take these ports as their
        # backing store; the ofmap buffer is kept. So these swaps survive set_params.
        memory.ifmap_port = FlatReadPort()
        memory.filter_port = FlatReadPort()
        memory.ofmap_buf = FlatWriteBuffer()
        return memory

    return _ScaleSimParts(BatchedOperands=BatchedOperands, scratchpad=scratchpad)


__all__ = ["ArraySpec", "run_single_layer", "scale_config_of"]
