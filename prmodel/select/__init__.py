"""Choosing what to measure: spaces, step detection, Performance Representatives, samplers.

Modules, in import order: ``spaces`` (parameter spaces), ``steps`` (step detection),
``representatives`` (the PR types and file), ``selection`` (the initial sweep design and PRs
from measured sweeps), ``plots``, ``network_prior`` and ``samplers`` (every sampler behind
``make_sampler``). Nothing here measures: the measuring stages are in
:mod:`prmodel.workflows`.
"""
