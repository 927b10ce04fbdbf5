"""cocotb verification of the exported RTL on Icarus and Verilator: the runner that builds a
design and runs a testbench module (``runner.py``), the helpers every testbench shares
(``common.py``, with ``drivers.py`` and ``checks.py``), cycle-accurate reference models of the
blocks (``models.py``), one constrained-random testbench per block (``tb_<block>.py``,
docs/VERIFICATION.md), and the co-verification of whole networks against the integer
reference (``harness.py``, ``coverify.py``, ``tb_network.py``, ``tb_firmware.py``;
docs/COVERIFICATION.md)."""
