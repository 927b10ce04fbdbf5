"""Bus adapters of :class:`~spinbayes.firmware.driver.CoreDriver`: the Amaranth simulator and a
cocotb handle (the timing contract of a bus is in firmware/driver.py's docstring)."""

from __future__ import annotations

__all__ = ["AmaranthBus", "CocotbBus"]


class AmaranthBus:
    """Bus adapter for an Amaranth simulator testbench context."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    def set(self, port: str, value) -> None:
        self.ctx.set(getattr(self.dut, port), value)

    def get(self, port: str):
        return self.ctx.get(getattr(self.dut, port))

    async def settle(self) -> None:
        """Amaranth settles combinational logic on every ``ctx.set``: nothing to wait for."""

    async def tick(self) -> None:
        await self.ctx.tick()


class CocotbBus:
    """Bus adapter for a cocotb handle of the exported core (``spinbayes_core``).

    ``tick`` waits for the rising edge of ``clk`` and then 1 ps, so that every register
    update of the edge is visible to ``get``; ``settle`` waits 1 ps so that writes made in
    this cycle have been applied and combinational outputs have settled. Array ports
    (``trace_indices``) are returned as one integer; :meth:`get` splits those of a
    :class:`~amaranth.lib.data.ArrayLayout` when ``fields`` names their element width.
    """

    def __init__(self, dut, *, clock: str = "clk",
                 fields: dict[str, tuple[int, int]] | None = None):
        self.dut = dut
        self._clk = getattr(dut, clock)
        #: port -> (element width, count) for ports to be returned as a list of elements
        self.fields = dict(fields or {})
        self._handles: dict = {}

    def _h(self, port: str):
        h = self._handles.get(port)
        if h is None:
            h = self._handles[port] = getattr(self.dut, port)
        return h

    def set(self, port: str, value) -> None:
        self._h(port).value = int(value)

    def get(self, port: str):
        v = self._h(port).value
        if port in self.fields:
            width, count = self.fields[port]
            raw = int(v)
            return [(raw >> (width * i)) & ((1 << width) - 1) for i in range(count)]
        return v.to_signed() if port in ("out_data", "vfy_level") else int(v)

    async def settle(self) -> None:
        from cocotb.triggers import Timer
        await Timer(1, unit="ps")

    async def tick(self) -> None:
        from cocotb.triggers import RisingEdge, Timer
        await RisingEdge(self._clk)
        await Timer(1, unit="ps")
