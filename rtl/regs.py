"""The programming port's register map, shared by the RTL and the firmware.

One enum serves both sides (no bare register numbers anywhere): the network core decodes
``prog_sel`` with it, and firmware/ writes with it. A write presents ``prog_sel``, the index
fields ``prog_a`` / ``prog_b`` / ``prog_c`` and ``prog_data``, holds them with ``prog_en`` and
waits for ``prog_ready``.

Written once here, and derived everywhere else:

* the **programming word** (:data:`PROG_FIELDS`): field widths of the core's ports, the
  harness's write-list word (:func:`pack_prog`, :func:`prog_layout`) and the text of a
  firmware image's descriptor line (:func:`prog_text`, :func:`parse_prog_text`);
* the **legal values** of every register's fields for a design: rtl/reg_ranges.py
  (:func:`~spinbayes.rtl.reg_ranges.register_ranges`), from the fields and enums here;
* the **read path** (:class:`ReadReg`, :data:`READ_FIELDS`, :class:`Status`,
  :data:`COUNTERS`): the core's ``rd_*`` port, its read multiplexer and the driver's reads.

Pure Python (the Amaranth layout is built on demand): firmware imports it without the RTL.
"""

from __future__ import annotations

import enum
import numbers
import re

__all__ = ["CONFIDENCE_BITS", "COUNTERS", "COUNTER_REGS", "GEOMETRY_REGS", "HEALTH_LAYOUT",
           "HEALTH_REGS",
           "PROG_FIELDS", "PROG_ORDER", "PROG_SIGNED", "PROG_TEXT_FORM", "PROG_WIDTHS",
           "PROG_WORD_BITS",
           "READ_DATA_BITS", "READ_FIELDS", "READ_UNKNOWN", "SEED_MAX", "AdaptRule",
           "LayerKind",
           "OutKind", "ReadReg", "Reg", "Status", "as_data", "check_seed",
           "pack_prog", "parse_prog_text", "prog_field_range", "prog_layout", "prog_text",
           "unpack_prog"]


class Reg(enum.IntEnum):
    """Register selects of the programming port (``prog_sel``).

    Index fields per register: a, b, c (unused ones are ignored); ``data`` is signed 32-bit.
    """

    #: crossbar cell: a = row, b = cell column, c = crossbar index k; data = signed level -4..4
    XBAR_CELL = 0
    #: layer descriptor, c = layer: rows (inputs) of the layer
    LAYER_ROWS = 1
    #: layer descriptor, c = layer: outputs (neurons, or classes for the last layer)
    LAYER_OUTS = 2
    #: layer descriptor, c = layer: first R-row group of the layer in every crossbar
    LAYER_GROUP_BASE = 3
    #: layer descriptor, c = layer: bits A of the layer's input code (A_in for layer 0)
    LAYER_IN_BITS = 4
    #: comparator threshold theta, c = layer, a = output, b = comparator m - 1
    THRESHOLD = 5
    #: comparator sign, c = layer, a = output: 1 means sigma = -1 (BatchNorm gamma < 0)
    SIGN = 6
    #: output scale M_c of the last layer, a = class
    SCALE = 7
    #: output offset B_c of the last layer, a = class
    OFFSET = 8
    #: number of layers in use
    N_LAYERS = 9
    #: passes T per image
    PASSES = 10
    #: n-way: crossbars chosen per layer and pass
    N_WAY = 11
    #: RNG threshold round(p_sw * 2^W), shared by every emulated device
    RNG_THRESHOLD = 12
    #: seed of an emulated RNG device, c = layer, a = device (loads it immediately)
    RNG_SEED = 13
    #: layer geometry (golden/geometry.py ``LayerGeometry``), c = layer: the kind
    #: (:class:`LayerKind`)
    LAYER_KIND = 14
    #: layer geometry, c = layer: input channels C_in (a dense layer: its fan-in)
    LAYER_C_IN = 15
    #: layer geometry, c = layer: input height H (a dense layer: 1)
    LAYER_H = 16
    #: layer geometry, c = layer: input width W (a dense layer: 1)
    LAYER_W = 17
    #: layer geometry, c = layer: window size k (a dense layer: 1)
    LAYER_K = 18
    #: layer geometry, c = layer: window stride (a dense layer: 1)
    LAYER_STRIDE = 19
    #: layer geometry, c = layer: zero padding (a dense layer: 0)
    LAYER_PADDING = 20
    #: layer geometry, c = layer: max-pooling kernel = stride of the outputs (0: none)
    LAYER_POOL = 21
    #: RNG health tests (every device of every arbiter, and the pair tests): RCT cutoff C
    HEALTH_RCT_CUTOFF = 22
    #: RNG health tests: APT cutoff C (window 1024; above 1024 the test never fires)
    HEALTH_APT_CUTOFF = 23
    #: RNG health tests: bias monitor low watermark (window 4096; 0 disables the low side)
    HEALTH_BIAS_LOW = 24
    #: RNG health tests: bias monitor high watermark (4096 disables the high side)
    HEALTH_BIAS_HIGH = 25
    #: threshold of one RNG device, c = layer, a = device: 0 .. 2^W its own (a fault map's
    #: stuck or biased device), -1 the shared RNG_THRESHOLD again (the reset state)
    RNG_DEV_THRESHOLD = 26
    #: adaptive T (docs/HARDWARE.md, "Adaptive T"): the stopping rule (:class:`AdaptRule`;
    #: reset value OFF, every image runs PASSES passes)
    ADAPT_RULE = 27
    #: adaptive T: T_min, the fewest passes an image runs (1 .. PASSES; reset value 1)
    ADAPT_T_MIN = 28
    #: adaptive T, confidence rule: stop when votes_lead * 2^CONFIDENCE_BITS >= threshold * t
    #: (0 .. 2^CONFIDENCE_BITS)
    ADAPT_THRESHOLD = 29
    #: adaptive T, exact rule: hi - lo, the span of one pass's output y_c over every class
    #: and every input (golden/adaptive.py ``output_span``; 0 .. 2^out_bits - 1)
    ADAPT_SPAN = 30
    #: first-layer reuse (docs/HARDWARE.md, "First-layer reuse"): 1 computes each crossbar's
    #: first-layer sums once per image and keeps them (rtl/reuse.py); 0 (the reset value)
    #: reads the first layer in every pass. Only 0 in a design without the reuse cache
    REUSE = 31


class AdaptRule(enum.IntEnum):
    """``Reg.ADAPT_RULE`` values: when the controller stops an image's passes early."""

    #: every image runs PASSES passes (the reset value)
    OFF = 0
    #: stop once the class of the PASSES-pass run can no longer change
    EXACT = 1
    #: stop once the leading class's share of the per-pass votes reaches the threshold
    CONFIDENCE = 2


#: Fraction bits of ``Reg.ADAPT_THRESHOLD``: a threshold of 2^CONFIDENCE_BITS is a vote share
#: of 1 (unanimous), 2^(CONFIDENCE_BITS - 1) a share of 1/2.
CONFIDENCE_BITS = 8


class LayerKind(enum.IntEnum):
    """``Reg.LAYER_KIND`` values (golden/geometry.py ``KINDS``)."""

    #: dense: one output position, the window is the identity
    LINEAR = 0
    #: convolution: a window slid over a C_in x H x W activation tensor
    CONV2D = 1


#: The per-layer geometry registers, in the order of golden/geometry.py's fields.
GEOMETRY_REGS = (Reg.LAYER_KIND, Reg.LAYER_C_IN, Reg.LAYER_H, Reg.LAYER_W, Reg.LAYER_K,
                 Reg.LAYER_STRIDE, Reg.LAYER_PADDING, Reg.LAYER_POOL)


class OutKind(enum.IntEnum):
    """What a beat of the result stream carries (``out_kind``)."""

    #: y_c of one pass (``out_pass`` = t, ``out_index`` = c)
    PASS = 0
    #: averaged_c = floor((Y_c + floor(T/2)) / T) (``out_index`` = c)
    AVERAGE = 1
    #: the predicted class argmax_c Y_c (in ``out_data``)
    CLASS = 2


# --- the programming word ---------------------------------------------------------------
#: Fields of one programming-port write, LSB first: (name, bits). ``data`` is two's
#: complement, the others unsigned. The core's ``prog_<name>`` ports, the harness's write-list
#: word, the image's ``descriptor.hex`` lines and the driver all take their widths from here.
PROG_FIELDS: tuple[tuple[str, int], ...] = (("data", 32), ("c", 8), ("b", 16), ("a", 16),
                                            ("sel", 5))
#: Field name -> bits.
PROG_WIDTHS: dict[str, int] = dict(PROG_FIELDS)
#: The signed field(s).
PROG_SIGNED = frozenset({"data"})
#: Bits of one whole word (77).
PROG_WORD_BITS = sum(w for _, w in PROG_FIELDS)
#: Field names MSB first: the port order of the core and the order of a descriptor line.
PROG_ORDER: tuple[str, ...] = tuple(name for name, _ in reversed(PROG_FIELDS))
#: Hex digits of each field in a descriptor line.
_DIGITS = {name: -(-bits // 4) for name, bits in PROG_FIELDS}
#: A descriptor line's shape, e.g. ``SS_AAAA_BBBB_CC_DDDDDDDD``.
PROG_TEXT_FORM = "_".join((name[0].upper()) * _DIGITS[name] for name in PROG_ORDER)
_TEXT_RE = re.compile("_".join(f"([0-9a-fA-F]{{{_DIGITS[n]}}})" for n in PROG_ORDER))
#: Largest firmware RNG seed: the emulated devices' xorshift32 state has 32 bits, so a seed
#: of 2^32 or more would alias a smaller one.
SEED_MAX = 2 ** 32 - 1


def prog_layout():
    """The word as an Amaranth ``data.StructLayout`` (LSB first, ``data`` signed)."""
    from amaranth import signed, unsigned
    from amaranth.lib import data

    return data.StructLayout({name: signed(bits) if name in PROG_SIGNED else unsigned(bits)
                              for name, bits in PROG_FIELDS})


def prog_field_range(name: str) -> range:
    """Values a field can carry: 0 .. 2^bits - 1, or two's complement for ``data``."""
    bits = PROG_WIDTHS[name]
    return range(-2 ** (bits - 1), 2 ** (bits - 1)) if name in PROG_SIGNED else range(2 ** bits)


def _checked_fields(sel, a, b, c, data) -> dict[str, int]:
    """The fields as Python ints, or ValueError naming the first that does not fit."""
    values = {"sel": sel, "a": a, "b": b, "c": c, "data": data}
    for name, v in values.items():
        r = prog_field_range(name)
        if not _is_int(v) or v not in r:
            raise ValueError(f"programming word field {name} must be an integer in "
                             f"{r.start}..{r.stop - 1} ({PROG_WIDTHS[name]} bits), not {v!r}")
    return {name: int(v) for name, v in values.items()}


def pack_prog(sel: int, a: int, b: int, c: int, data: int) -> int:
    """One programming word as an unsigned integer of :data:`PROG_WORD_BITS` bits."""
    values = _checked_fields(sel, a, b, c, data)
    word, shift = 0, 0
    for name, bits in PROG_FIELDS:
        word |= (values[name] & (2 ** bits - 1)) << shift
        shift += bits
    return word


def unpack_prog(word: int) -> tuple[int, int, int, int, int]:
    """(sel, a, b, c, data) of a word packed by :func:`pack_prog` (data sign-extended)."""
    if not isinstance(word, int) or not 0 <= word < 2 ** PROG_WORD_BITS:
        raise ValueError(f"a programming word must be an integer in 0..2**{PROG_WORD_BITS}-1, "
                         f"not {word!r}")
    values = {}
    for name, bits in PROG_FIELDS:
        values[name] = _signed(name, word & (2 ** bits - 1))
        word >>= bits
    return tuple(values[n] for n in PROG_ORDER)


def _signed(name: str, raw: int) -> int:
    """A field's value from its raw bits (sign-extended for a signed field)."""
    bits = PROG_WIDTHS[name]
    return raw - 2 ** bits if name in PROG_SIGNED and raw >> (bits - 1) else raw


def prog_text(sel: int, a: int, b: int, c: int, data: int) -> str:
    """A descriptor line (:data:`PROG_TEXT_FORM`, lower-case hex, data two's complement).
    Without the underscores it is the word of :func:`pack_prog` in hex."""
    values = _checked_fields(sel, a, b, c, data)
    return "_".join(f"{values[n] & (2 ** PROG_WIDTHS[n] - 1):0{_DIGITS[n]}x}" for n in PROG_ORDER)


def as_data(pattern: int) -> int:
    """A bit pattern of the data field's width (e.g. an unsigned 32-bit RNG seed) as the
    signed value the field carries."""
    if not isinstance(pattern, int) or not 0 <= pattern < 2 ** PROG_WIDTHS["data"]:
        raise ValueError(f"a data pattern must be an integer in "
                         f"0..2**{PROG_WIDTHS['data']}-1, not {pattern!r}")
    return _signed("data", pattern)


def parse_prog_text(text: str) -> tuple[int, int, int, int, int] | None:
    """(sel, a, b, c, data) of a descriptor line, or None if it is not of the form (or a
    field's digits exceed its width, e.g. a ``sel`` of 0x20 and above)."""
    m = _TEXT_RE.fullmatch(text)
    if m is None:
        return None
    raw = [int(g, 16) for g in m.groups()]
    if any(v >> PROG_WIDTHS[n] for n, v in zip(PROG_ORDER, raw)):
        return None
    return tuple(_signed(n, v) for n, v in zip(PROG_ORDER, raw))


def check_seed(seed) -> int:
    """The firmware RNG seed if it is an integer in 0..SEED_MAX, else ValueError."""
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in 0..{SEED_MAX} (the RNG devices' 32-bit "
                         f"state), not {seed!r}")
    return int(seed)


# --- the register read path ----------------------------------------------------------
class ReadReg(enum.IntEnum):
    """Register selects of the read port (``rd_sel``; ``rd_index`` selects a layer where a
    register has one per layer). A read returns ``rd_data`` (:data:`READ_DATA_BITS` bits)."""

    #: status flags (:class:`Status`)
    STATUS = 0
    #: activity counters (32 bits, wrap at 2^32, cleared only by reset; docs/HARDWARE.md)
    CNT_XBAR_READS = 1
    CNT_RNG_DRAWS = 2
    CNT_AAC_OPS = 3
    CNT_CMP_OPS = 4
    CNT_AVG_OPS = 5
    CNT_CYCLES = 6
    #: passes the last finished image ran (PASSES, or fewer under an adaptive rule)
    PASSES_RUN = 7
    #: per layer (rd_index): latched RNG health alarms (:data:`HEALTH_LAYOUT`)
    HEALTH_ALARMS = 16
    #: per layer: event counts of devices 0..3 (8 bits each, device d in bits 8d..8d+7,
    #: saturating) of the RCT, the APT, the bias monitor
    HEALTH_RCT_EVENTS = 17
    HEALTH_APT_EVENTS = 18
    HEALTH_BIAS_EVENTS = 19
    #: per layer: the same counts of devices 4..7
    HEALTH_RCT_EVENTS_HI = 20
    HEALTH_APT_EVENTS_HI = 21
    HEALTH_BIAS_EVENTS_HI = 22
    #: per layer: bits 2d, 2d + 1 the bias watermark (low, high) device d crossed; bits
    #: 16..31 the draws with a pair-test event (saturating)
    HEALTH_SIDES = 23


#: The activity counters' read selects, and their names (``cnt_xbar_reads``, ...): the keys of
#: every counter dictionary (driver, testbenches, co-verification, energy report).
COUNTER_REGS = tuple(r for r in ReadReg if r.name.startswith("CNT_"))
COUNTERS = tuple(r.name.lower() for r in COUNTER_REGS)
#: The health read registers (one per layer, ``rd_index`` = layer; a layer the design does
#: not have reads :data:`READ_UNKNOWN`).
HEALTH_REGS = tuple(r for r in ReadReg if r.name.startswith("HEALTH_"))
#: ``HEALTH_ALARMS`` word: bit 3d + t is device d's test t (``tests``: RCT, APT, bias) for
#: d < ``devices``; bit ``pair`` + d the pair test of devices d and d + 1; bit ``stuck`` the
#: arbiter's stuck flag. The event-count registers hold ``count_bits`` per device.
HEALTH_LAYOUT = {"tests": ("rct", "apt", "bias"), "devices": 8, "pair": 24, "stuck": 31,
                 "count_bits": 8}
#: What a read of a select that is not a :class:`ReadReg` returns (with ``rd_valid``).
READ_UNKNOWN = 0
READ_DATA_BITS = 32
#: Fields of a read request: (name, bits). ``index`` is as wide as a write's layer field ``c``.
READ_FIELDS: tuple[tuple[str, int], ...] = (
    ("sel", max(ReadReg).bit_length()),
    ("index", PROG_WIDTHS["c"]))


class Status(enum.IntFlag):
    """Bits of :attr:`ReadReg.STATUS`."""

    #: an image is in progress (the ``busy`` port)
    BUSY = 1 << 0
    #: idle and no write accepted or landing: an input beat now starts an image
    READY = 1 << 1
    #: an N_LAYERS write has landed since reset (the compiler writes it after every layer's
    #: descriptor)
    PROGRAMMED = 1 << 2
    #: the class of the last image has been streamed out; cleared by the next image's first
    #: input beat
    DONE = 1 << 3
    #: any alarm: an arbiter's stuck flag (the ``stuck`` port) or an RNG health alarm of
    #: any layer (``HEALTH_ALARMS``), sticky until reset
    ALARM = 1 << 4


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)
