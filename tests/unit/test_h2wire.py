"""HTTP/2 framing and request header blocks, checked against an independent HPACK decoder
(the ``hpack`` library, which the server side of these tests plays)."""

from __future__ import annotations

import hpack
import pytest

from pykubemark.kube import h2wire as wire


def _request(path: bytes, agent: bytes = b"kubelet/v1.20.2 (linux/amd64) kubernetes/faecb19",
             extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":authority", b"127.0.0.1:6443"), (b":scheme", b"https"),
            (b":path", path), (b"accept", b"application/vnd.kubernetes.protobuf"),
            (b"user-agent", agent), *(extra or [])]


def test_blocks_decode_to_the_fields_sent_and_constant_fields_become_indices() -> None:
    encoder, decoder = wire.RequestEncoder(), hpack.Decoder()
    blocks = []
    for i in range(5):
        fields = _request(f"/api/v1/namespaces/ns/pods/p-{i}".encode(),
                          extra=[(b"content-length", str(100 + i).encode())])
        block = encoder.encode(fields)
        assert decoder.decode(block, raw=True) == fields
        blocks.append(block)
    assert len(blocks[1]) < len(blocks[0]) - 50  # accept and user agent went in the table
    assert len({len(b) for b in blocks[1:]}) == 1  # nothing more is added per request


def test_two_agents_on_one_connection_keep_the_tables_in_step() -> None:
    encoder, decoder = wire.RequestEncoder(), hpack.Decoder()
    for i in range(20):
        fields = _request(b"/api/v1/nodes/n", agent=f"agent-{i % 3}".encode())
        assert decoder.decode(encoder.encode(fields), raw=True) == fields


def test_a_full_table_sends_literals_and_never_evicts() -> None:
    encoder, decoder = wire.RequestEncoder(), hpack.Decoder()
    for i in range(200):  # ~200 distinct values of ~60 bytes: far over 4096 bytes
        fields = _request(b"/", extra=[(b"x-value", f"{i:040d}".encode())])
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
    assert decoder.header_table_size <= wire.DEFAULT_TABLE_SIZE


def test_a_smaller_table_from_settings_is_signalled_and_respected() -> None:
    encoder, decoder = wire.RequestEncoder(), hpack.Decoder()
    fields = _request(b"/a")
    decoder.decode(encoder.encode(fields), raw=True)
    encoder.table_size(64)
    decoder.max_allowed_table_size = 64  # what the server does on our SETTINGS ACK
    for path in (b"/b", b"/c"):
        assert decoder.decode(encoder.encode(_request(path)), raw=True) == _request(path)
    assert decoder.header_table_size <= 64


def test_authorization_is_never_indexed() -> None:
    decoder = hpack.Decoder()
    fields = _request(b"/", extra=[(b"authorization", b"Bearer secret")])
    decoded = decoder.decode(wire.RequestEncoder().encode(fields), raw=True)
    kinds = {name: type(field) for field in decoded for name in [field[0]]}
    assert kinds[b"authorization"] is hpack.NeverIndexedHeaderTuple
    assert kinds[b"user-agent"] is not hpack.NeverIndexedHeaderTuple


@pytest.mark.parametrize("value", [0, 30, 31, 127, 128, 1337, 1 << 20])
def test_hpack_integers_round_trip(value: int) -> None:
    # a literal without indexing whose value has this many bytes, read back by hpack
    block = b"\x00" + wire.hpack_string(b"x-n") + wire.hpack_string(b"v" * value)
    decoder = hpack.Decoder(max_header_list_size=2 << 20)
    assert decoder.decode(block, raw=True) == [(b"x-n", b"v" * value)]


def test_frames_split_at_boundaries_and_a_partial_frame_waits() -> None:
    stream = (wire.frame(wire.SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64")
              + wire.window_update(3, 1000) + wire.data_frames(3, b"ab" * 10, 8, True))
    buffer = bytearray(stream[:-3])
    frames, used = wire.split_frames(buffer, wire.DEFAULT_FRAME_SIZE)
    assert [(k, s) for k, _, s, _ in frames] == [(wire.SETTINGS, 0), (wire.WINDOW_UPDATE, 3),
                                                 (wire.DATA, 3), (wire.DATA, 3)]
    assert len(stream) - used == 9 + 4  # the last DATA frame (4 bytes) waits whole
    last, _ = wire.split_frames(bytearray(stream[used:]), wire.DEFAULT_FRAME_SIZE)
    kind, flags, _, payload = last[0]
    assert (kind, flags & wire.END_STREAM, payload) == (wire.DATA, wire.END_STREAM, b"abab")
    assert list(wire.parse_settings(frames[0][3])) == [(wire.SETTINGS_MAX_CONCURRENT_STREAMS,
                                                         100)]


def test_an_oversized_frame_is_a_protocol_error() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.split_frames(bytearray(wire.frame(wire.DATA, 0, 1, b"x" * 100)), 64)


def test_a_large_header_block_goes_on_in_continuation_frames() -> None:
    block = wire.RequestEncoder().encode(_request(b"/" + b"p" * 40000))
    frames, _ = wire.split_frames(bytearray(wire.header_frames(5, block, 16384, True)),
                                  16384)
    assert [k for k, *_ in frames] == [wire.HEADERS, wire.CONTINUATION, wire.CONTINUATION]
    assert [f & wire.END_HEADERS for _, f, _, _ in frames] == [0, 0, wire.END_HEADERS]
    assert frames[0][1] & wire.END_STREAM
    assert b"".join(p for *_, p in frames) == block


def test_padding_and_priority_are_stripped() -> None:
    payload = bytes([3]) + b"\x00\x00\x00\x01\x10" + b"block" + b"\x00" * 3
    flags = wire.PADDED | wire.PRIORITY_FLAG
    assert wire.unpad(flags, payload, priority=True) == b"block"
    assert wire.unpad(wire.PADDED, bytes([2]) + b"data\x00\x00") == b"data"
    with pytest.raises(wire.ProtocolError):
        wire.unpad(wire.PADDED, bytes([9]) + b"abc")


# -- response header blocks: ``hpack``'s encoder plays the apiserver's ------------------------
def _answer(i: int) -> list[tuple[bytes, bytes]]:
    return [(b":status", b"200" if i % 3 else b"201"),
            (b"audit-id", f"5d2c{i:04d}-9f3e-4a1b-8c7d-{i:012x}".encode()),
            (b"cache-control", b"no-cache, private"),
            (b"content-type", b"application/vnd.kubernetes.protobuf"),
            (b"date", f"Tue, 24 Nov 2026 20:{i // 60 % 60:02d}:{i % 60:02d} GMT".encode()),
            (b"content-length", str(100 + i % 7).encode())]


@pytest.mark.parametrize("huffman", [True, False])
def test_answers_decode_as_encoded_while_the_table_fills_and_evicts(huffman: bool) -> None:
    encoder, decoder = hpack.Encoder(), wire.ResponseDecoder()
    for i in range(300):  # a fresh audit id per answer: the 4 KiB table evicts all along
        fields = _answer(i)
        assert decoder.decode(encoder.encode(fields, huffman=huffman)) == fields


def test_never_indexed_and_unindexed_literals_leave_the_table_alone() -> None:
    encoder, decoder = hpack.Encoder(), wire.ResponseDecoder()
    secret = hpack.NeverIndexedHeaderTuple("x-secret", "s3cret")
    for i in range(3):
        block = encoder.encode([*_answer(i), secret])
        assert decoder.decode(block) == [*_answer(i), (b"x-secret", b"s3cret")]
    unindexed = b"\x00" + wire.hpack_string(b"x-once") + wire.hpack_string(b"v")
    assert decoder.decode(unindexed) == [(b"x-once", b"v")]
    # the table is still the encoder's: the next indexed fields resolve alike
    assert decoder.decode(encoder.encode(_answer(1))) == _answer(1)


def test_a_smaller_table_signalled_by_the_server_is_followed() -> None:
    encoder, decoder = hpack.Encoder(), wire.ResponseDecoder()
    decoder.decode(encoder.encode(_answer(0)))
    for size in (256, 0, 4096):
        encoder.header_table_size = size  # the next block starts with a size update
        for i in range(1, 20):
            assert decoder.decode(encoder.encode(_answer(i))) == _answer(i)


@pytest.mark.parametrize("block", [
    b"\x3f\xe2\x1f",                      # a size update to 4097, over the 4096 allowed
    b"\x88\x20",                          # a size update after a field
    b"\xbe",                              # index 62 with an empty dynamic table
    b"\x80",                              # index 0
    b"\x00\x03x-a\x85\xff\xff",           # a Huffman string cut short
    b"\x00\x03x-a\x81\x00",               # Huffman bits that end without the EOS prefix
    b"\x00\x7f",                          # a name whose length runs past the block
])
def test_broken_answer_blocks_are_protocol_errors(block: bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.ResponseDecoder().decode(block)


def test_huffman_decoding_agrees_with_hpack_on_every_byte_value() -> None:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    text = bytes(range(256)) * 2
    assert wire.huffman_decode(encoder.encode(text)) == text
