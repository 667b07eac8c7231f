"""The socket-level fuzz benchmark on a small scale: every malformed message counted at every listening socket,
nothing derived from them, valid traffic afterwards (the figures are in docs/reliability.md, "Fuzzing")."""

from __future__ import annotations

from runtime.evaluation.fuzz import malformed, run_fuzz
from runtime.link import protocol


def test_malformed_messages_are_all_refused_by_the_decoder_and_differ() -> None:
    payloads = list(malformed(("command", "state"), 500, protocol.MAX_CONTROL_BYTES))
    assert len(payloads) == 500 and len(set(payloads)) > 400


def test_every_listening_socket_counts_every_malformed_message_and_resumes() -> None:
    result = run_fuzz(300)
    assert [entry["socket"] for entry in result["sockets"]] == [
        "runtime state SUB", "runtime frame SUB", "runtime goal PULL", "sim controller command SUB"]
    for entry in result["sockets"]:
        assert entry["sent"] >= 301 and entry["counted"] == entry["sent"] and entry["uncounted"] == [], entry
        assert entry["derived_from_bad_data"] == 0 and entry["valid_traffic_resumed"], entry
    assert result["sockets"][0]["counters"]["state_reconnects"] == 1  # the message over 64 MiB
    assert result["sockets"][1]["counters"]["frame_reconnects"] == 1

