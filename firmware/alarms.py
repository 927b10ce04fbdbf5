"""The named errors of a core alarm, decoded from the health read registers.

When the core's ``STATUS`` shows ``ALARM`` (an arbiter's ``stuck`` flag, or an RNG health
test of any device of any layer: docs/HARDWARE.md, "RNG health tests in the core"), the
driver and the co-verification testbench read ``HEALTH_ALARMS`` and the event counts of
every layer in use (``ReadReg.HEALTH_*``, ``rd_index`` = layer) and raise the error
:func:`alarm_error` builds from them: :class:`RngHealthError` when a device's test (or a pair
test) fired, else :class:`ArbiterStuckError`. Both are :class:`CoreAlarmError`, a
``RuntimeError``; the message names each layer's arbiter, device and test.

Pure Python: the driver, the cocotb testbench and ``spinbayes sim`` share these classes.
"""

from __future__ import annotations

from typing import NamedTuple

from ..rtl.regs import HEALTH_LAYOUT, ReadReg

__all__ = ["ArbiterStuckError", "CoreAlarmError", "HealthAlarm", "RngHealthError",
           "alarm_error", "decode_alarms", "health_json"]

TESTS = HEALTH_LAYOUT["tests"]
_NAMES = {"rct": "Repetition Count Test", "apt": "Adaptive Proportion Test",
          "bias": "bias monitor", "pair": "pair test (two devices give the same bits)",
          "stuck": "stuck (more than 64 * 2^k rejected draws in a row)"}


class HealthAlarm(NamedTuple):
    """One latched alarm: the layer whose arbiter raised it, the device (an int; a pair test:
    (d, d + 1); the stuck flag: None), the test (``rct``, ``apt``, ``bias``, ``pair`` or
    ``stuck``) and its event count (None where the registers keep none)."""

    layer: int
    device: int | tuple[int, int] | None
    test: str
    events: int | None = None

    def __str__(self) -> str:
        if self.device is None:
            where = f"layer {self.layer}'s arbiter"
        elif isinstance(self.device, tuple):
            where = f"layer {self.layer}'s arbiter, devices {self.device[0]} and {self.device[1]}"
        else:
            where = f"layer {self.layer}'s arbiter, device {self.device}"
        count = "" if self.events is None else f", {self.events} event(s)"
        return f"{where}: {_NAMES[self.test]}{count}"


class CoreAlarmError(RuntimeError):
    """The core raised ALARM during an inference; ``alarms`` lists what latched, ``health``
    holds the registers read ({layer: {ReadReg: value}}), ``cycles`` and ``image`` say when
    (cycles of the image, the image's number in a run) where known."""

    kind = "core alarm"

    def __init__(self, alarms: list[HealthAlarm], cycles: int | None = None,
                 image: int | None = None, health: dict | None = None):
        self.alarms, self.cycles, self.image = list(alarms), cycles, image
        self.health = health or {}
        when = "" if image is None else f" in image {image}"
        when += "" if cycles is None else f" after {cycles} cycles of the image"
        listed = "; ".join(str(a) for a in self.alarms) or "no health register set"
        super().__init__(f"{self.kind}{when}: {listed}")


class RngHealthError(CoreAlarmError):
    """An RNG device's online health test fired (RCT, APT, bias monitor or a pair test)."""

    kind = "RNG health alarm"


class ArbiterStuckError(CoreAlarmError):
    """An arbiter's stuck flag is set and no health test fired: a selection cannot end."""

    kind = "arbiter stuck"


def _field(word: int, i: int, bits: int) -> int:
    return (word >> (i * bits)) & (2 ** bits - 1)


def decode_alarms(layer: int, words: dict) -> list[HealthAlarm]:
    """The alarms of one layer from its health registers ``words`` ({ReadReg: value}, at
    least ``HEALTH_ALARMS``; the event counts where given)."""
    lay = HEALTH_LAYOUT
    bits, per_word = lay["count_bits"], 32 // lay["count_bits"]
    alarms_word = int(words[ReadReg.HEALTH_ALARMS])
    out = []
    for d in range(lay["devices"]):
        for t, test in enumerate(TESTS):
            if alarms_word >> (3 * d + t) & 1:
                reg = ReadReg((ReadReg.HEALTH_RCT_EVENTS if d < per_word
                               else ReadReg.HEALTH_RCT_EVENTS_HI) + t)
                events = _field(words[reg], d % per_word, bits) if reg in words else None
                out.append(HealthAlarm(layer, d, test, events))
    for d in range(lay["devices"] - 1):
        if alarms_word >> (lay["pair"] + d) & 1:
            out.append(HealthAlarm(layer, (d, d + 1), "pair"))
    if alarms_word >> lay["stuck"] & 1:
        out.append(HealthAlarm(layer, None, "stuck"))
    return out


def alarm_error(health: dict, cycles: int | None = None,
                image: int | None = None) -> CoreAlarmError:
    """The error for the health registers ``health`` ({layer: {ReadReg: value}}, the layers
    in use; layers and selects may be strings, as in :func:`health_json`): :class:`RngHealthError`
    if any device or pair test latched, else
    :class:`ArbiterStuckError` if a stuck flag is set, else a plain :class:`CoreAlarmError`
    (the ALARM came from a layer not in ``health``)."""
    health = {int(layer): {ReadReg(int(r)): int(v) for r, v in words.items()}
              for layer, words in health.items()}
    alarms = [a for layer in sorted(health) for a in decode_alarms(layer, health[layer])]
    if any(a.test != "stuck" for a in alarms):
        kind = RngHealthError
    else:
        kind = ArbiterStuckError if alarms else CoreAlarmError
    return kind(alarms, cycles, image, health)


def health_json(health: dict) -> dict:
    """``health`` ({layer: {ReadReg: value}}) as JSON-able {"layer": {"select": value}};
    :func:`alarm_error` takes either form."""
    return {str(layer): {str(int(r)): int(v) for r, v in words.items()}
            for layer, words in health.items()}
