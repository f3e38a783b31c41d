"""HTTP/2 frames and request header blocks as bytes, for the client side only.

A hollow node's pod costs a dozen requests, and a general HTTP/2 state machine (``h2``:
an event object per frame, a stream state machine, a full HPACK encoder with Huffman
coding) spent about a third of the fleet's CPU on them (benchmarks/podpath.py). A client
that sends GETs, PATCHes and watches needs far less: frames are a 9-byte header and a
payload, and a request's header block is mostly the same bytes every time. Responses'
header blocks are decoded here too (`ResponseDecoder`), with ``hpack``'s Huffman table.

Request headers are encoded as client-go's encoder would index them (RFC 7541): the
constant fields of a connection (user agent, accept, content type, ...) are added to the
dynamic table once and then sent as one-byte indices; the path and lengths go as literals
that are never added, so the table never evicts and an entry's index follows from the
order of insertion alone. Huffman coding is not used (allowed; it saves bytes, not work).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable

from hpack.huffman_table import (
    HUFFMAN_COMPLETE,
    HUFFMAN_EMIT_SYMBOL,
    HUFFMAN_FAIL,
    HUFFMAN_TABLE,
)
from hpack.table import HeaderTable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

NO_ERROR, PROTOCOL_ERROR, CANCEL = 0x0, 0x1, 0x8
DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384
DEFAULT_TABLE_SIZE = 4096
MAX_STREAM_ID = (1 << 31) - 1

_HEADER = struct.Struct(">HBBBI")
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_U32_PAIR = struct.Struct(">II")


class ProtocolError(ValueError):
    """Bytes from the server that are not HTTP/2 as this client speaks it."""


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int = NO_ERROR) -> bytes:
    return frame(GOAWAY, 0, 0, _U32_PAIR.pack(last_stream_id, code))


def data_frames(stream_id: int, body: bytes | memoryview, max_size: int,
                end_stream: bool) -> bytes:
    """``body`` as DATA frames of at most ``max_size`` bytes (the caller has the window)."""
    view = memoryview(body)
    out = []
    while True:
        chunk, view = view[:max_size], view[max_size:]
        out.append(frame(DATA, END_STREAM if end_stream and not view else 0, stream_id,
                         bytes(chunk)))
        if not view:
            return b"".join(out)


def header_frames(stream_id: int, block: bytes, max_size: int, end_stream: bool) -> bytes:
    """A header block as HEADERS (and CONTINUATION frames when it exceeds a frame)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_size:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    out = [frame(HEADERS, flags, stream_id, block[:max_size])]
    rest = block[max_size:]
    while rest:
        chunk, rest = rest[:max_size], rest[max_size:]
        out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream_id, chunk))
    return b"".join(out)


def parse_settings(payload: bytes) -> Iterable[tuple[int, int]]:
    if len(payload) % 6:
        raise ProtocolError("SETTINGS payload is not a multiple of 6 bytes")
    return (_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6))


def split_frames(buffer: bytes | bytearray, max_size: int
                 ) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """The complete frames at the start of ``buffer`` as (type, flags, stream, payload),
    and how many bytes they took; a partial frame stays for the next read."""
    frames = []
    pos, end = 0, len(buffer)
    while end - pos >= 9:
        hi, lo, kind, flags, stream_id = _HEADER.unpack_from(buffer, pos)
        size = hi << 8 | lo
        if size > max_size:
            raise ProtocolError(f"frame of {size} bytes over the {max_size} allowed")
        if end - pos - 9 < size:
            break
        frames.append((kind, flags, stream_id & MAX_STREAM_ID,
                       bytes(buffer[pos + 9:pos + 9 + size])))
        pos += 9 + size
    return frames, pos


def unpad(flags: int, payload: bytes, priority: bool = False) -> bytes:
    """The payload of a DATA or HEADERS frame without its padding and priority fields."""
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload or payload[0] >= end:
            raise ProtocolError("padding longer than the frame")
        start, end = 1, end - payload[0]
    if priority and flags & PRIORITY_FLAG:
        start += 5
    if start > end:
        raise ProtocolError("frame too short for its flags")
    return payload[start:end] if (start or end != len(payload)) else payload


# -- HPACK: the request side -----------------------------------------------------------------
def hpack_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix, ``first`` holding the other bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(value: bytes) -> bytes:
    return hpack_integer(len(value), 7, 0) + value


#: RFC 7541 Appendix A: the static table entries a client request uses.
STATIC = {(b":authority", b""): 1, (b":method", b"GET"): 2, (b":method", b"POST"): 3,
          (b":path", b"/"): 4, (b":scheme", b"https"): 7}
STATIC_NAMES = {b":authority": 1, b":method": 2, b":path": 4, b":scheme": 6,
                b"accept": 19, b"authorization": 23, b"content-length": 28,
                b"content-type": 31, b"user-agent": 58}
#: Never added to the table, as Go's encoder (its "sensitive" fields).
SENSITIVE = frozenset({b"authorization", b"cookie"})
#: Literal per request, never added: the table would churn (RFC 7541 7.1.3 allows either).
VOLATILE = frozenset({b":path", b"content-length"})


class RequestEncoder:
    """Header blocks for one connection's requests (RFC 7541, encoder side)."""

    def __init__(self, table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self._limit = table_size
        self._used = 0
        self._order: dict[tuple[bytes, bytes], int] = {}  # field -> insertion number
        self._prefix = b""  # a dynamic table size update owed at the next block
        self._fields: dict[tuple[bytes, bytes], bytes] = {}  # never-indexed literals
        #: fields whose bytes stay the same until the table grows (indices, sensitive
        #: literals): nearly every field of a request after the first few
        self._known: dict[tuple[bytes, bytes], bytes] = {}

    def table_size(self, size: int) -> None:
        """The server's SETTINGS_HEADER_TABLE_SIZE. Below the default, the table starts
        afresh at that size, signalled at the start of the next block (RFC 7541 4.2);
        above it, the table stays at the default (this encoder needs no more)."""
        size = min(size, DEFAULT_TABLE_SIZE)
        if size == self._limit:
            return
        self._order.clear()
        self._known.clear()
        self._used, self._limit = 0, size
        self._prefix = hpack_integer(0, 5, 0x20) + hpack_integer(size, 5, 0x20)

    def encode(self, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
        out = [self._prefix] if self._prefix else []
        self._prefix = b""
        known = self._known
        for field in fields:
            data = known.get(field)
            out.append(self._field(field) if data is None else data)
        return b"".join(out)

    def _field(self, field: tuple[bytes, bytes]) -> bytes:
        static = STATIC.get(field)
        if static is not None:
            data = self._known[field] = bytes((0x80 | static,))
            return data
        number = self._order.get(field)
        if number is not None:
            data = self._known[field] = hpack_integer(62 + len(self._order) - 1 - number,
                                                      7, 0x80)
            return data
        name, value = field
        if name in VOLATILE:
            return self._literal(name, value, 0x00)
        if name in SENSITIVE:
            if len(self._known) < 256:
                self._known[field] = self._literal(name, value, 0x10)
                return self._known[field]
            return self._literal(name, value, 0x10)
        cached = self._fields.get(field)
        if cached is not None:
            return cached
        size = len(name) + len(value) + 32
        if self._used + size <= self._limit:
            self._order[field] = len(self._order)
            self._used += size
            self._known.clear()  # every index moved up by one
            return self._literal(name, value, 0x40)
        # The table is full: literal without indexing, the same bytes every time.
        if len(self._fields) < 256:
            self._fields[field] = self._literal(name, value, 0x00)
            return self._fields[field]
        return self._literal(name, value, 0x00)

    @staticmethod
    def _literal(name: bytes, value: bytes, kind: int) -> bytes:
        """A literal field (``kind`` 0x40: add to the table, 0x00: don't, 0x10: never),
        its name by static index when the static table has it."""
        index = STATIC_NAMES.get(name)
        bits = 6 if kind == 0x40 else 4
        head = hpack_integer(index, bits, kind) if index else bytes((kind,)) + hpack_string(name)
        return head + hpack_string(value)


# -- HPACK: the response side ----------------------------------------------------------------
_STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_COUNT = len(_STATIC_TABLE)


def _integer(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 5.1: the integer at ``pos`` with an N-bit prefix, and the position after."""
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        if pos >= len(block) or shift > 28:
            raise ProtocolError("HPACK integer truncated or too large")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


#: The Huffman decoder's steps a byte at a time, (state, byte) -> (state, symbols,
#: complete), filled as met: ``hpack``'s table steps a nibble at a time, and a value's
#: decoding was most of a response header block's cost. The apiserver's values use few
#: symbols (an audit id's hex digits, a date's), so few of the 65 536 pairs are met.
_HUFFMAN_BYTES: dict[int, tuple[int, bytes, bool]] = {}
#: Values met again (a second's date, a content length, a status) and their decoding.
_HUFFMAN_SEEN: dict[bytes, bytes] = {}
_HUFFMAN_SEEN_MAX = 4096


def _huffman_byte(state: int, byte: int) -> tuple[int, bytes, bool]:
    out = bytearray()
    flags = 0
    for nibble in (byte >> 4, byte & 0x0F):
        state, flags, symbol = HUFFMAN_TABLE[state * 16 + nibble]
        if flags & HUFFMAN_FAIL:
            raise ProtocolError("invalid Huffman string in a header block")
        if flags & HUFFMAN_EMIT_SYMBOL:
            out.append(symbol)
    return state, bytes(out), bool(flags & HUFFMAN_COMPLETE)


def huffman_decode(data: bytes) -> bytes:
    """RFC 7541 5.2: a Huffman-coded string, decoded."""
    seen = _HUFFMAN_SEEN.get(data)
    if seen is not None:
        return seen
    steps = _HUFFMAN_BYTES
    out = bytearray()
    state, complete = 0, True
    for byte in data:
        key = state << 8 | byte
        step = steps.get(key)
        if step is None:
            step = steps[key] = _huffman_byte(state, byte)
        state, symbols, complete = step
        if symbols:
            out += symbols
    if not complete:
        raise ProtocolError("Huffman string not ended with the EOS prefix")
    if len(_HUFFMAN_SEEN) >= _HUFFMAN_SEEN_MAX:
        _HUFFMAN_SEEN.clear()
    value = _HUFFMAN_SEEN[data] = bytes(out)
    return value


class ResponseDecoder:
    """Header blocks of one connection's responses (RFC 7541, decoder side).

    The apiserver's encoder adds nearly every field to the table (a fresh audit id per
    response among them), so each block changes the table and cannot be cached; what can
    be saved is ``hpack``'s general path (a tuple subclass, a copy of the rest of the
    block and a log call per field), which cost a few percent of a pod's CPU. Names and
    values come back as bytes."""

    def __init__(self, table_size: int = DEFAULT_TABLE_SIZE,
                 max_header_list: int = 1 << 20) -> None:
        self._table: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._used = 0
        self._size = self._allowed = table_size
        self._max_list = max_header_list

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        total, pos, end = 0, 0, len(block)
        while pos < end:
            byte = block[pos]
            if byte & 0x80:  # indexed field, nearly always a one-byte index
                if byte != 0xFF:
                    index, pos = byte & 0x7F, pos + 1
                else:
                    index, pos = _integer(block, pos, 7)
                field = (_STATIC_TABLE[index - 1] if 0 < index <= _STATIC_COUNT
                         else self._entry(index))
            elif byte & 0x40 or not byte & 0x20:  # literal: indexed, or not (0000/0001)
                index, pos = _integer(block, pos, 6 if byte & 0x40 else 4)
                if index:
                    name = self._entry(index)[0]
                else:
                    name, pos = self._string(block, pos)
                value, pos = self._string(block, pos)
                field = (name, value)
                if byte & 0x40:
                    self._add(field)
            else:  # dynamic table size update, only before the first field
                size, pos = _integer(block, pos, 5)
                if fields or size > self._allowed:
                    raise ProtocolError("HPACK table size update out of place or too large")
                self._size = size
                self._evict()
                continue
            fields.append(field)
            total += len(field[0]) + len(field[1]) + 32
            if total > self._max_list:
                raise ProtocolError(f"a header list over {self._max_list} bytes")
        return fields

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= len(_STATIC_TABLE):
            return _STATIC_TABLE[index - 1]
        try:
            return self._table[index - len(_STATIC_TABLE) - 1]
        except IndexError:
            raise ProtocolError(f"HPACK index {index} out of the table") from None

    @staticmethod
    def _string(block: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(block):
            raise ProtocolError("HPACK string truncated")
        huffman = block[pos] & 0x80
        length, pos = _integer(block, pos, 7)
        end = pos + length
        if end > len(block):
            raise ProtocolError("HPACK string truncated")
        value = block[pos:end]
        return (huffman_decode(value) if huffman else value), end

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + 32
        if size > self._size:  # RFC 7541 4.4: an entry too large empties the table
            self._table.clear()
            self._used = 0
            return
        self._table.appendleft(field)
        self._used += size
        self._evict()

    def _evict(self) -> None:
        while self._used > self._size:
            name, value = self._table.pop()
            self._used -= len(name) + len(value) + 32
