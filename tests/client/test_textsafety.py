"""Terminal-safe rendering of other people's text (spec 0007 #terminal-safety).

Properties first (hypothesis): whatever a peer wrote, what :mod:`client.textsafety`
returns carries no control or format character the rule forbids, plain text passes
through unchanged, and a second pass changes nothing. Then the attacks of issue #14
finding 3, one by one, and the look-alike name markers.
"""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.cli.output import Context, Result, emit, emit_error
from client.cli.render import Names, format_publish, format_report
from client.config import ClientConfig
from client.errors import NodeTimeoutError
from client.publish import NodeOutcome, PublishResult
from client.reader import NodeReport, ReadReport
from client.textsafety import (
    TAB,
    display_name,
    escape_char,
    name_flags,
    safe_line,
    safe_name,
    safe_text,
)
from protocol.events import sign_event
from protocol.identity import Identity

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
INVISIBLE = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"
#: Characters a hostile author reaches for: controls, bidi, zero-width, tags,
#: variation selectors, combining marks, blank letters, separators, surrogates.
HOSTILE = (
    "".join(map(chr, range(0x20)))
    + "\x7f"
    + "".join(map(chr, range(0x80, 0xA0)))
    + BIDI
    + INVISIBLE
    + "\U000e0001\U000e0041\U000e007f\ufe0f\ufe00\U000e0100"
    + "\u0301\u20e3\u0338\u034f\u3164\u115f\u2800\u2028\u2029\ud800\udfff"
)
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(HOSTILE),
        st.characters(codec="utf-8"),  # any code point but surrogates (HOSTILE has two)
        st.sampled_from("a1 ~@❤🔥👨"),
    ),
    max_size=60,
)
plain_ascii = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))


def _forbidden(out: str, *, newline: bool, joiners: bool) -> list[str]:
    """Characters of ``out`` the rule forbids: any Cc/Cf/Cs/Zl/Zp, except a newline
    where allowed and (free text only) a joiner between two drawn characters."""
    bad = []
    for i, ch in enumerate(out):
        cat = unicodedata.category(ch)
        if ch == "\n" and newline:
            continue
        if (
            joiners
            and ch in "\u200c\u200d"
            and 0 < i < len(out) - 1
            and not out[i - 1].isspace()
            and unicodedata.category(out[i - 1]) not in ("Cc", "Cf")
            and not out[i + 1].isspace()
            and unicodedata.category(out[i + 1]) not in ("Cc", "Cf")
        ):
            continue
        if cat in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            bad.append(ch)
    return bad


@given(hostile_text)
def test_names_carry_no_control_format_or_invisible_character(text: str) -> None:
    out = safe_name(text)
    assert _forbidden(out, newline=False, joiners=False) == []
    assert not any(0xFE00 <= ord(c) <= 0xFE0F or 0xE0100 <= ord(c) <= 0xE01EF for c in out)
    assert not any(c in "\u3164\u115f\u1160\u2800\u034f" for c in out)
    assert "\n" not in out and "\t" not in out


@given(hostile_text)
def test_one_line_fields_carry_no_control_or_format_character(text: str) -> None:
    out = safe_line(text)
    assert _forbidden(out, newline=False, joiners=True) == []
    assert not any(c in BIDI for c in out)


@given(hostile_text)
def test_free_text_keeps_only_newlines_and_joiners_between_letters(text: str) -> None:
    out = safe_text(text)
    assert _forbidden(out, newline=True, joiners=True) == []
    assert "\t" not in out and "\x1b" not in out and "\r" not in out
    assert not any(c in BIDI for c in out)
    assert out.count("\n") == text.replace("\r\n", "\n").count("\n") + text.count(
        "\u2028"
    ) + text.count("\u2029")


@given(hostile_text)
def test_a_second_pass_changes_nothing(text: str) -> None:
    for f in (safe_text, safe_line, safe_name):
        once = f(text)
        assert f(once) == once


@given(plain_ascii)
def test_plain_ascii_is_unchanged(text: str) -> None:
    assert safe_text(text) == safe_line(text) == safe_name(text) == text
    assert name_flags(text) == ()
    assert display_name(text) == text


@given(hostile_text)
def test_every_dropped_character_is_visible_as_an_escape(text: str) -> None:
    """Nothing silently disappears: each escaped character's escape is in the output."""
    out = safe_line(text)
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\u200c\u200d":
            assert escape_char(ch) in out


# -- the attacks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\b\b@alice", "\\x08\\x08@alice"),  # backspace over the '~', then forge a petname
        ("x\r@alice", "x\\r@alice"),  # carriage return: overwrite from column 0
        ("bob\n@alice · just now", "bob\\n@alice · just now"),  # a forged line
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear the screen
        ("\x1b[1A\x1b[2K", "\\x1b[1A\\x1b[2K"),  # up one line, erase it
        ("\x9b2J", "\\x9b2J"),  # the same with a C1 CSI
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # set the window title
        ("\x1bP+q\x1b\\", "\\x1bP+q\\x1b\\"),  # DCS
        ("alice\u202eecila", "alice\\u202eecila"),  # right-to-left override
        ("al\u200bice", "al\\u200bice"),  # zero-width space
        ("\u0338alice", "\\u0338alice"),  # a mark that would strike through the '~'
        ("\u3164", "\\u3164"),  # a blank-looking letter
        ("tag\U000e0041\U000e0042", "tag\\U000e0041\\U000e0042"),  # invisible tag characters
    ],
)
def test_hostile_names_are_escaped_visibly(raw: str, shown: str) -> None:
    assert safe_name(raw) == shown


def test_osc8_hyperlinks_show_their_target() -> None:
    link = "\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\"
    out = safe_text(link)
    assert "\x1b" not in out
    assert "https://evil.example/" in out and "\\x1b]8;;" in out


def test_free_text_keeps_newlines_expands_tabs_and_escapes_carriage_returns() -> None:
    assert safe_text("a\tb\r\nc\rd\u2028e") == f"a{TAB}b\nc\\rd\ne"
    assert safe_line("a\tb\nc") == "a\\tb\\nc"


@pytest.mark.parametrize(
    "text",
    [
        "❤️",  # heart + VS16 (emoji presentation)
        "❤️\u200d🔥",  # heart on fire: base, VS16, ZWJ, base
        "👨\u200d👩\u200d👧",  # family
        "1️⃣",  # keycap: digit, VS16, enclosing keycap
        "می\u200cخواهم",  # Persian: ZWNJ inside a word
        "क्\u200dष",  # Devanagari: virama, ZWJ
        "café",  # precomposed
        "cafe\u0301",  # decomposed: a mark on a letter
    ],
)
def test_legitimate_joiners_selectors_and_marks_survive_in_free_text(text: str) -> None:
    assert safe_text(text) == text
    assert safe_line(text) == text


def test_names_escape_joiners_and_selectors_that_free_text_keeps() -> None:
    assert safe_name("a\u200db") == "a\\u200db"
    assert safe_name("❤️") == "❤\\ufe0f"
    assert safe_text("\u200dx") == "\\u200dx"  # a joiner with nothing before it


def test_lone_surrogates_are_escaped_not_a_crash() -> None:
    assert safe_text("a\ud800b") == "a\\ud800b"
    safe_text("a\ud800b").encode("utf-8")


# -- look-alike names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("alice", ()),
        ("Alice Smith-Jones 3", ()),
        ("Иван", ()),  # one script, not all Latin look-alikes
        ("Ελλάδα", ()),
        ("山田太郎", ()),
        ("山田 Taro", ()),  # Han + Latin: how Japanese and Chinese names are written
        ("ひらがなカタカナ漢字", ()),
        ("김철수 Kim", ()),
        ("\u0430lice", ("mixed-script",)),  # Cyrillic a + Latin
        ("Ωmega", ("mixed-script",)),
        ("\u0430\u0440\u0435", ("confusable",)),  # Cyrillic "аре" reads as Latin "ape"
        ("ΑΒΕ", ("confusable",)),  # Greek capitals
        ("ａｌｉｃｅ", ("confusable",)),  # fullwidth
        ("𝐚𝐥𝐢𝐜𝐞", ("confusable",)),  # mathematical bold
        ("Bob\u00a0Smith", ("confusable",)),  # no-break space
        ("cafe\u0301", ("confusable",)),  # decomposed: prints like the precomposed one
        ("\u0430lic\u0435\u00a0", ("mixed-script", "confusable")),
    ],
)
def test_name_flags(name: str, flags: tuple[str, ...]) -> None:
    assert name_flags(name) == flags


def test_display_name_marks_look_alikes_after_the_escaped_name() -> None:
    assert display_name("alice") == "alice"
    assert display_name("\u0430lice") == "\u0430lice ⚠mixed-script"
    assert display_name("ａ\u200bｂ") == "ａ\\u200bｂ ⚠confusable"


# -- the CLI's output paths ----------------------------------------------------------------


def test_node_messages_in_read_and_publish_reports_are_one_escaped_line(tmp_path: Path) -> None:
    """A node's error message is peer-supplied: it may not add lines or move the cursor."""
    hostile = "bad\x1b[2J\n! http://127.0.0.1:1: all good"
    report = ReadReport(nodes=[NodeReport(url="http://n1", error=NodeTimeoutError(hostile))])
    out = format_report(report, Names(ClientConfig.load(tmp_path)))
    assert out.count("\n") == 0 and "\x1b" not in out
    assert "bad\\x1b[2J\\n! http://127.0.0.1:1: all good" in out

    identity = Identity.from_seed(bytes(32))
    event = sign_event(identity, kind="post", body={"text": "hi"}, seq=1, prev=None)
    outcome = NodeOutcome(url="http://n1", status="rejected", code="x\x07", message=hostile)
    out = format_publish(
        PublishResult(event=event, outcomes=(outcome,), head_source="none"), "Posted"
    )
    assert "\x1b" not in out and "\x07" not in out
    assert "! http://n1: rejected: x\\x07: bad\\x1b[2J\\n! http://127.0.0.1:1: all good" in out


def test_emit_escapes_text_and_writes_ascii_json(tmp_path: Path) -> None:
    """The last pass: whatever a command's text holds, the terminal gets no raw control."""
    stdout, stderr = io.StringIO(), io.StringIO()
    ctx = Context(home=tmp_path, as_name=None, nodes=(), json=False, stdout=stdout, stderr=stderr)
    emit(ctx, Result({}, "one\x1b[2K\ntwo\u202e"))
    emit_error(ctx, "x", "msg\x1b]0;t\x07")
    assert stdout.getvalue() == "one\\x1b[2K\ntwo\\u202e\n"
    assert stderr.getvalue() == "murmur: error: msg\\x1b]0;t\\x07\n"

    stdout = io.StringIO()
    ctx = Context(home=tmp_path, as_name=None, nodes=(), json=True, stdout=stdout, stderr=stderr)
    emit(ctx, Result({"text": "\x1b[2J\u202e\x9b"}, ""))
    assert stdout.getvalue().isascii()
    assert json.loads(stdout.getvalue()) == {"text": "\x1b[2J\u202e\x9b"}


def test_names_show_markers_in_text_and_exact_names_in_json(tmp_path: Path) -> None:
    identity = Identity.from_seed(bytes(31) + b"\x01")
    name = "\b\u0430lice"
    profile = sign_event(identity, kind="profile", body={"name": name}, seq=1, prev=None)
    names = Names(ClientConfig.load(tmp_path), {identity.did: profile})
    assert names.display(identity.did) == "~\\x08\u0430lice ⚠mixed-script"
    assert names.display_raw(identity.did) == "~" + name
