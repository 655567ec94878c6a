"""The encoder reproduces DeepSeek's four official V4 test vectors byte for byte."""

from __future__ import annotations

import hashlib
import json

from dsml import encode_messages, from_openai_messages


def test_encode_messages_is_byte_identical_to_the_reference(v4_case) -> None:
    messages, mode, expected = v4_case
    assert encode_messages(messages, mode) == expected


def test_typed_messages_render_like_the_openai_dicts(v4_case) -> None:
    messages, mode, expected = v4_case
    assert encode_messages(from_openai_messages(messages), mode) == expected


def test_fixture_files_are_the_published_ones(v4_manifest) -> None:
    fixtures, cases = v4_manifest
    for case in cases:
        for key, name in (("input", case["input"]), ("expected_output", case["expected_output"])):
            digest = hashlib.sha256((fixtures / name).read_bytes()).hexdigest()
            assert digest == case["sha256"][key], name


def test_encoder_does_not_modify_its_input(v4_case) -> None:
    messages, mode, _ = v4_case
    before = json.dumps(messages, sort_keys=True)
    encode_messages(messages, mode)
    assert json.dumps(messages, sort_keys=True) == before
