"""Other people's text, made safe to show on a terminal (spec 0007 #terminal-safety).

The protocol signs and stores text exactly as its author wrote it; this module is only
about *showing* it, and is pure (strings in, strings out) so that any front end (the
CLI today, a web client later) can share it. Everything a peer chose — display names,
post text, list names, reasons, node error messages, URLs — goes through one of:

- :func:`safe_text` for multi-line free text (posts, bios): newlines kept, tabs
  become spaces, every other control character made visible;
- :func:`safe_line` for one-line fields (reasons, warnings, messages, URLs): like
  ``safe_text`` but newlines are made visible too;
- :func:`safe_name` for names (display names, petnames, list and labeler names):
  one line, and every invisible or format character made visible, joiners and
  variation selectors included;
- :func:`display_name` = :func:`safe_name` plus a look-alike marker
  (:func:`name_flags`: ``mixed-script``, ``confusable``).

"Made visible" means replaced by a Python-style escape (``\\x1b``, ``\\u202e``,
``\\U000e0041``; ``\\n``, ``\\t``, ``\\r`` for those three) so the reader sees that
something was there. What is escaped: C0 and C1 controls (category Cc, so every
ANSI/CSI/OSC/DCS sequence loses the ESC or C1 introducer that makes it a sequence
and prints as inert text), format characters (Cf: bidi embeddings, overrides,
isolates and marks, zero-width space/joiners, word joiner and invisible operators,
BOM, soft hyphen, Unicode tag characters), lone surrogates, line and paragraph
separators, a few blank-looking letters (Hangul fillers and friends), and a
combining mark with nothing visible before it (it would combine with the ``~`` or
``@`` the client puts in front of a name). In free text, zero-width (non-)joiners
between two visible characters (Persian, Indic scripts, emoji sequences) and a
variation selector after a visible character (emoji presentation) are kept; in
names they are escaped. A backslash is never escaped: a literal ``\\x1b`` typed by
an author looks like an escaped ESC, which is harmless.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = [
    "TAB",
    "display_name",
    "escape_char",
    "name_flags",
    "safe_line",
    "safe_name",
    "safe_text",
]

#: What a tab in free text becomes.
TAB = "    "

_ZWNJ, _ZWJ = "\u200c", "\u200d"
_JOINERS = frozenset((_ZWNJ, _ZWJ))
#: Letters and marks that draw nothing (Unicode Default_Ignorable_Code_Point and
#: blank-looking letters that are not in a format category).
_INVISIBLE = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180b\u180c\u180d\u180f"  # Mongolian free variation selectors
    "\u2800"  # braille pattern blank
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ALWAYS = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_MARKS = frozenset(("Mn", "Mc", "Me"))


def escape_char(ch: str) -> str:
    """``ch`` as a visible escape: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    short = _SHORT.get(ch)
    if short is not None:
        return short
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _is_variation_selector(ch: str) -> bool:
    cp = ord(ch)
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


# What the full pass needs to know of a character, cached: a timeline repeats few.
_PLAIN, _SPACE, _MARK, _JOINER, _SELECTOR, _DANGER = range(6)


@functools.lru_cache(maxsize=8192)
def _kind(ch: str) -> int:
    if ch in _JOINERS:
        return _JOINER
    if _is_variation_selector(ch):
        return _SELECTOR
    cat = unicodedata.category(ch)
    if cat in _ALWAYS or ch in _INVISIBLE:
        return _DANGER  # escaped wherever it appears (newline and tab aside, in free text)
    if cat in _MARKS:
        return _MARK
    return _SPACE if ch.isspace() else _PLAIN


#: Printable characters (``str.isprintable``) the full pass may still change.
_PRINTABLE_BUT_SPECIAL = re.compile(
    "[" + "".join(sorted(_INVISIBLE)) + "\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)


def _unchanged(line: str) -> bool:
    """True if the full pass would return ``line`` (one line) as is: the common case,
    decided at C speed but for one category lookup per word."""
    if line.isascii():
        return line.isprintable()
    return (
        line.isprintable()  # no Cc, Cf, Cs, Zl, Zp, nor any space but U+0020
        and _PRINTABLE_BUT_SPECIAL.search(line) is None
        and not any(unicodedata.category(w[0]) in _MARKS for w in line.split(" ") if w)
    )


def _sanitise(text: str, *, multiline: bool, strict: bool) -> str:
    """The one pass behind the three public functions.

    A character's verdict looks only at neighbours that are kept, never at escapes,
    so running it twice changes nothing: kept characters keep the same kept
    neighbours, and escapes are printable ASCII.
    """
    if all(map(_unchanged, text.split("\n") if multiline else (text,))):
        return text
    if multiline:
        text = text.replace("\r\n", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    n = len(text)
    kept = [False] * n
    selectors: list[int] = []
    joiners: list[int] = []
    base = False  # the last kept character draws something a mark may sit on
    for i, ch in enumerate(text):
        kind = _kind(ch)
        if kind == _PLAIN or (kind == _MARK and base):
            kept[i] = base = True
        elif kind == _SPACE or (multiline and ch in "\n\t"):
            kept[i], base = True, False
        elif kind == _JOINER:
            joiners.append(i)
            base = False
        elif kind == _SELECTOR:
            selectors.append(i)
            base = base and not strict  # a keycap mark may follow "1" + VS16
        else:  # dangerous, or a mark that would combine with what the client printed
            base = False
    if not strict:

        def drawn(j: int) -> bool:
            return 0 <= j < n and kept[j] and not text[j].isspace()

        for i in selectors:  # after a visible character, not after another selector
            kept[i] = drawn(i - 1) and not _is_variation_selector(text[i - 1])
        for i in joiners:  # between two visible characters (a selector may precede)
            kept[i] = drawn(i - 1) and drawn(i + 1) and not _is_variation_selector(text[i + 1])
    return "".join(
        (TAB if ch == "\t" else ch) if kept[i] else escape_char(ch) for i, ch in enumerate(text)
    )


def safe_text(text: str) -> str:
    """Multi-line free text (a post, a bio) for a terminal: newlines kept (CRLF and
    U+2028/2029 become ``\\n``), tabs become :data:`TAB`, all else dangerous escaped."""
    return _sanitise(text, multiline=True, strict=False)


def safe_line(text: str) -> str:
    """A one-line field (a reason, a warning, an error message, a URL): as
    :func:`safe_text` but newlines and tabs are escaped too."""
    return _sanitise(text, multiline=False, strict=False)


def safe_name(name: str) -> str:
    """A name, one line, with every invisible character escaped (joiners, variation
    selectors and blank letters included): two names that print alike are alike."""
    return _sanitise(name, multiline=False, strict=True)


# -- look-alike names --------------------------------------------------------------------

#: Script sets that one name may mix without a marker (UTS #39 "highly restrictive").
_ALLOWED_MIXES = (
    frozenset(("LATIN", "HAN", "HIRAGANA", "KATAKANA")),
    frozenset(("LATIN", "HAN", "BOPOMOFO")),
    frozenset(("LATIN", "HAN", "HANGUL")),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "COPTIC": "GREEK"}
#: Cyrillic and Greek letters that print like Latin ones: a name made only of them
#: reads as a Latin name it is not (a "whole-script confusable").
_LATIN_LOOKALIKES = frozenset(
    "аеорсухѕіјԁԛԝһӏүАВЕКМНОРСТХЅІЈԚԜҮ"  # Cyrillic
    "οναικυρΑΒΕΖΗΙΚΜΝΟΡΤΥΧ"  # Greek
)


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name; None for anything else."""
    if unicodedata.category(ch) not in ("Lu", "Ll", "Lt", "Lo"):
        return None  # digits, punctuation, symbols, modifier letters, marks: common
    name = unicodedata.name(ch, "")
    if not name:
        return None
    word = name.split(" ", 1)[0].split("-", 1)[0]
    return _SCRIPT_ALIASES.get(word, word)


def name_flags(name: str) -> tuple[str, ...]:
    """Why a display name may not be what it looks like (empty when nothing is odd).

    - ``mixed-script``: letters of more than one script (after NFKC), other than the
      Latin + Han + kana/Bopomofo/Hangul mixes of CJK writing (UTS #39);
    - ``confusable``: the name changes under NFKC (fullwidth or mathematical letters,
      ligatures, odd spaces), or every letter of it is a Cyrillic or Greek letter that
      prints like a Latin one.
    """
    if name.isascii():
        return ()  # one script, and NFKC leaves ASCII as it is
    flags: list[str] = []
    folded = unicodedata.normalize("NFKC", name)
    scripts = {s for s in map(_script, folded) if s is not None}
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        flags.append("mixed-script")
    letters = [c for c in folded if _script(c) is not None]
    latin_lookalike = scripts <= {"CYRILLIC", "GREEK"} and all(
        c in _LATIN_LOOKALIKES for c in letters
    )
    if folded != name or (letters and latin_lookalike):
        flags.append("confusable")
    return tuple(flags)


def display_name(name: str) -> str:
    """A display name for a terminal: :func:`safe_name`, then `` ⚠flag,flag`` if
    :func:`name_flags` finds anything."""
    flags = name_flags(name)
    shown = safe_name(name)
    return f"{shown} ⚠{','.join(flags)}" if flags else shown
