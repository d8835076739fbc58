"""The demo: the researcher's story, end to end, against the embedded emulator.

``run_demo`` runs every ``DemoStep`` in a work folder over an emulator of ``DEMO_CORPUS``.
"""

from nbia_audit.demo.story import DEMO_CORPUS, DemoStep, run_demo

__all__ = ["DEMO_CORPUS", "DemoStep", "run_demo"]
