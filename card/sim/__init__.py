"""Simulated cards and the test PKI, for tests, benchmarks and the demo
(docs/architecture.md, "Cards"): virtual PIV and HiCOS cards (``virtual``), an
in-process reader backend for them (``inprocess``), the bridge that puts them into
pcscd's vpcd reader (``vpcd``) and a Taiwan-shaped test PKI (``testpki``). Production
modules never import this package (an import-linter contract says so).
"""
