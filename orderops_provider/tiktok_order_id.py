"""Where a Shopify order carries its TikTok order id: the shop's setting and the matching.

Set once per shop in the Shopify connection's `extra.tiktok_order_id` (docs/tiktok-order-id.md);
every key is optional and a missing one keeps its default. Checked when the client is built (the
run's first task), so a bad setting fails the run naming the field, before any order is read.

Each id found is returned with the rule that found it (`custom_attribute:<key>`, `note:<name>`,
`name_prefix:<prefix>`, ...): the join records it, so coverage can be counted per rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orderops_provider.base import ConfigurationError

# A TikTok order id: 18 or 19 digits standing alone (not part of a longer number).
TIKTOK_ID = re.compile(r"(?<!\d)(\d{18,19})(?!\d)")
_ID_SHAPE = re.compile(r"\d{18,19}")
EXTRA_KEY = "tiktok_order_id"
# Where the join looks, in order of preference (include.decide.join ranks the rules by these).
PLACES = ("source_identifier", "custom_attribute", "note", "name")
DEFAULT_ATTRIBUTE_KEYS = ("tiktok order id", "tiktok_order_id", "tiktok order number")
DEFAULT_NOTE_PATTERNS = (
    # "TikTok Shop Order ID: 576...", "TikTok order #576...": the id after a TikTok label on its line
    ("tiktok_label", r"(?i)tiktok[^\d\n]{0,40}(\d{18,19})(?!\d)"),
    # any id-shaped number: a connector's note format is not documented (see the docs)
    ("any_number", r"(?<!\d)(\d{18,19})(?!\d)"),
)
# Bounds that keep a rule name within order_links.match_rule and a typo from passing as a setting.
MAX_KEY = 64
MAX_AFFIX = 32
MAX_PATTERN_NAME = 32
MAX_PATTERN = 500
_PATTERN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_FIELDS = (
    "source_identifier",
    "attribute_keys",
    "any_tiktok_order_attribute",
    "note_patterns",
    "name",
    "name_prefixes",
    "name_suffixes",
    "name_anywhere",
)


def place_of(rule: str) -> str:
    """The place (one of PLACES) a rule reads: `name_prefix:TT-` reads the name."""
    head = rule.split(":", 1)[0]
    return "name" if head.startswith("name") else head


def _letters(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


@dataclass(frozen=True)
class TikTokIdRules:
    """Where to look for the TikTok order id on a Shopify order (defaults: docs/tiktok-order-id.md)."""

    source_identifier: bool = True
    attribute_keys: tuple[str, ...] = DEFAULT_ATTRIBUTE_KEYS  # lower case, trimmed
    # any customAttributes key naming both "tiktok" and "order" ("TikTok Order ID", "tiktokOrderNo")
    any_tiktok_order_attribute: bool = True
    note_patterns: tuple[tuple[str, re.Pattern[str]], ...] = tuple((n, re.compile(p)) for n, p in DEFAULT_NOTE_PATTERNS)
    name: bool = True
    name_prefixes: tuple[str, ...] = ()
    name_suffixes: tuple[str, ...] = ()
    name_anywhere: bool = True  # the id standing alone anywhere else in the name

    @classmethod
    def from_extra(cls, doc: Any) -> TikTokIdRules:
        """The rules of a connection's extra.tiktok_order_id (None: the defaults); ConfigurationError
        names the field at fault."""
        where = f"extra.{EXTRA_KEY}"
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ConfigurationError(f"{where} must be an object, got {doc!r:.80}")
        unknown = sorted(set(doc) - set(_FIELDS))
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(_FIELDS)})"
            )
        flags = {}
        for key in ("source_identifier", "any_tiktok_order_attribute", "name", "name_anywhere"):
            value = doc.get(key, getattr(cls, key))
            if not isinstance(value, bool):
                raise ConfigurationError(f"{where}.{key} must be true or false, got {value!r:.80}")
            flags[key] = value
        keys = _texts(doc, "attribute_keys", where, MAX_KEY, DEFAULT_ATTRIBUTE_KEYS)
        return cls(
            attribute_keys=tuple(k.lower() for k in keys),
            note_patterns=_patterns(doc.get("note_patterns", dict(DEFAULT_NOTE_PATTERNS)), f"{where}.note_patterns"),
            name_prefixes=_texts(doc, "name_prefixes", where, MAX_AFFIX, ()),
            name_suffixes=_texts(doc, "name_suffixes", where, MAX_AFFIX, ()),
            **flags,
        )

    def find(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """Every TikTok order id the Shopify order (its GraphQL node) carries, each with the rule
        that found it, in the order of PLACES: an id found in two places is listed under both, one
        found twice in one place under the first rule (the first key, the first note pattern)."""
        found: list[dict[str, Any]] = []

        def add(tiktok_id: str, rule: str) -> None:
            place = place_of(rule)
            if not any(f["tiktok_order_id"] == tiktok_id and place_of(f["rule"]) == place for f in found):
                found.append({"tiktok_order_id": tiktok_id, "rule": rule})

        if self.source_identifier:
            for tiktok_id in TIKTOK_ID.findall(str(node.get("sourceIdentifier") or "")):
                add(tiktok_id, "source_identifier")
        for attribute in node.get("customAttributes") or []:
            if not isinstance(attribute, dict):
                continue
            key = str(attribute.get("key") or "").strip().lower()
            if key in self.attribute_keys or (
                self.any_tiktok_order_attribute and "tiktok" in _letters(key) and "order" in _letters(key)
            ):
                for tiktok_id in TIKTOK_ID.findall(str(attribute.get("value") or "")):
                    add(tiktok_id, f"custom_attribute:{key[:MAX_KEY]}")
        note = str(node.get("note") or "")
        for pattern_name, pattern in self.note_patterns:
            for match in pattern.finditer(note):
                tiktok_id, start, end = match.group(1), match.start(1), match.end(1)
                # a pattern's group may stop inside a longer number: that is not an id
                if (
                    tiktok_id
                    and _ID_SHAPE.fullmatch(tiktok_id)
                    and not note[start - 1 : start].isdigit()
                    and not note[end : end + 1].isdigit()
                ):
                    add(tiktok_id, f"note:{pattern_name}")
        if self.name:
            self._find_in_name(str(node.get("name") or ""), add)
        return found

    def _find_in_name(self, name: str, add: Callable[[str, str], None]) -> None:
        bare = name.strip()
        bare = bare[1:] if bare.startswith("#") else bare
        lower = bare.lower()
        prefixes = [p for p in ("", *self.name_prefixes) if lower.startswith(p.lower())]
        suffixes = [s for s in ("", *self.name_suffixes) if lower.endswith(s.lower())]
        for prefix in prefixes:
            for suffix in suffixes:
                core = bare[len(prefix) : len(bare) - len(suffix)]
                if _ID_SHAPE.fullmatch(core):
                    add(
                        core,
                        "name"
                        if not (prefix or suffix)
                        else f"name_prefix:{prefix}"
                        if not suffix
                        else f"name_suffix:{suffix}"
                        if not prefix
                        else f"name_prefix_suffix:{prefix}|{suffix}",
                    )
                    return
        if self.name_anywhere:
            for tiktok_id in TIKTOK_ID.findall(bare):
                add(tiktok_id, "name_contains")


def _texts(doc: dict[str, Any], key: str, where: str, longest: int, default: tuple[str, ...]) -> tuple[str, ...]:
    value = doc.get(key, default)
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"{where}.{key} must be a list of strings, got {value!r:.80}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item.strip()) > longest:
            raise ConfigurationError(
                f"{where}.{key}[{i}] must be a non-empty string of at most {longest} characters, got {item!r:.80}"
            )
        out.append(item.strip())
    return tuple(out)


def _patterns(value: Any, where: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Note patterns: an object of name -> regex with exactly one group (the id)."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be an object of name -> regular expression, got {value!r:.80}")
    out = []
    for name, text in value.items():
        if not _PATTERN_NAME.fullmatch(name) or len(name) > MAX_PATTERN_NAME:
            raise ConfigurationError(
                f"{where}: pattern name {name!r:.80} must be letters, digits, _ . or - (at most {MAX_PATTERN_NAME})"
            )
        if not isinstance(text, str) or not text or len(text) > MAX_PATTERN:
            raise ConfigurationError(
                f"{where}.{name} must be a regular expression of at most {MAX_PATTERN} characters, got {text!r:.80}"
            )
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise ConfigurationError(f"{where}.{name}: {text!r} is not a regular expression ({exc})") from None
        if pattern.groups != 1:
            raise ConfigurationError(
                f"{where}.{name}: {text!r} must have exactly one group (the id), it has {pattern.groups}"
            )
        out.append((name, pattern))
    return tuple(out)
