"""Keyset ("seek") pagination: a page of a long sorted list costs the same at row 20,000 as at row 1.

OFFSET pagination makes the database build and throw away every row before the page; a seek page
starts from the sort key of the row it continues from (``WHERE (key…) < (cursor…)``), which an
index on the sort key answers directly. Pages move first / previous / next / last; there are no
page numbers. Counts are capped (``COUNT_CAP``): a list knows "25 of 812" exactly, and "more than
1,000" beyond that, without counting 20,000 rows on every view.

Domain services describe a list as a ``Listing`` (a filtered query and its sort key); the web layer
asks for one ``SeekPage`` of it with the cursor from the request.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, bindparam, func, literal, select, tuple_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from cloud_portal.errors import InvalidInput
from cloud_portal.extensions import db
from cloud_portal.i18n import _

T = TypeVar("T")

#: Lists count their rows up to this many; beyond it they say "more than".
COUNT_CAP = 1000


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A list a person may see: ``query`` (filtered, unordered) sorted by ``keys``.

    The keys together must be unique per row (end with the primary key) and not null, so that a
    cursor names exactly one place in the order. All keys run in the same direction.
    """

    query: Select[tuple[T]]
    keys: tuple[QueryableAttribute[Any], ...]
    descending: bool = True

    def ordered(self) -> Select[tuple[T]]:
        """The whole list in its order (for short lists read at once)."""
        return self.query.order_by(*self._order(self.descending))

    def _order(self, descending: bool) -> list[ColumnElement[Any]]:
        return [k.desc() if descending else k.asc() for k in self.keys]


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts: the first page, after a cursor, before a cursor, or the last page."""

    after: str | None = None
    before: str | None = None
    last: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> PageRequest:
        """Read ``after``, ``before`` and ``last`` from a request's query arguments."""
        after, before = args.get("after") or None, args.get("before") or None
        last = (args.get("last") or "") not in ("", "0", "false")
        if sum(bool(x) for x in (after, before, last)) > 1:
            raise InvalidInput(_("Ask for one of after, before or last, not several."))
        return cls(after=after, before=before, last=last)


@dataclass
class SeekPage(Generic[T]):
    """One page of a Listing, with the cursors to move from it."""

    items: list[T]
    has_prev: bool
    has_next: bool
    #: Cursor of the first item (ask ``before`` it for the previous page); None on an empty page.
    prev_cursor: str | None
    #: Cursor of the last item (ask ``after`` it for the next page).
    next_cursor: str | None
    #: Rows in the whole list, counted up to COUNT_CAP (see ``total_is_lower_bound``).
    total: int
    total_is_lower_bound: bool = False


def encode_cursor(values: Sequence[Any]) -> str:
    """A row's sort-key values as an opaque, URL-safe string."""
    tagged = [["t", v.isoformat()] if isinstance(v, datetime) else ["v", v] for v in values]
    raw = json.dumps(tagged, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any]:
    """The values ``encode_cursor`` wrote; InvalidInput for anything else (a hand-edited link)."""
    bad = InvalidInput("That page link is not valid (it may be cut short); start again from the first page.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tagged = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(tagged, list) or len(tagged) != width:
        raise bad
    values: list[Any] = []
    for item in tagged:
        if not (isinstance(item, list) and len(item) == 2 and item[0] in ("t", "v")):
            raise bad
        tag, value = item
        if tag == "t":
            try:
                values.append(datetime.fromisoformat(str(value)))
            except ValueError as exc:
                raise bad from exc
        elif isinstance(value, (int, str)) and not isinstance(value, bool):
            values.append(value)
        else:
            raise bad
    return values


def _key_values(listing: Listing[Any], row: Any) -> list[Any]:
    return [getattr(row, key.key) for key in listing.keys]


def _beyond(listing: Listing[Any], cursor: str, forwards: bool) -> ColumnElement[bool]:
    """Rows after (``forwards``) or before the cursor's row, in the listing's order."""
    values = decode_cursor(cursor, len(listing.keys))
    bound = tuple_(*[bindparam(None, v, type_=k.type) for k, v in zip(listing.keys, values, strict=True)])
    row = tuple_(*listing.keys)
    # Descending lists continue towards smaller keys.
    return row < bound if forwards == listing.descending else row > bound


def count_capped(query: Select[Any], cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(rows, more_than_cap): counts at most cap + 1 rows, so the cost does not grow past the cap."""
    limited = query.with_only_columns(literal(1)).order_by(None).limit(cap + 1).subquery()
    total = db.session.scalar(select(func.count()).select_from(limited)) or 0
    return min(total, cap), total > cap


def seek_page(listing: Listing[T], page: PageRequest, per_page: int) -> SeekPage[T]:
    """One page of ``listing``: the first, the one after/before a cursor, or the last."""
    def fetch(forwards: bool, cursor: str | None) -> list[T]:
        query = listing.query
        if cursor:
            query = query.where(_beyond(listing, cursor, forwards))
        order = listing._order(listing.descending if forwards else not listing.descending)
        rows: list[T] = list(db.session.scalars(query.order_by(*order).limit(per_page + 1)).unique())  # type: ignore[arg-type]
        return rows

    if page.before or page.last:
        rows = fetch(False, page.before)
        more = len(rows) > per_page
        rows = rows[:per_page][::-1]
        if page.before and not more:
            # Stepped back to the start: show a full first page rather than a short one.
            return seek_page(listing, PageRequest(), per_page)
        has_prev, has_next = more, bool(page.before)
    else:
        rows = fetch(True, page.after)
        has_next = len(rows) > per_page
        rows = rows[:per_page]
        has_prev = bool(page.after)
    total, capped = count_capped(listing.query)
    return SeekPage(items=rows, has_prev=has_prev, has_next=has_next,
                    prev_cursor=encode_cursor(_key_values(listing, rows[0])) if rows else None,
                    next_cursor=encode_cursor(_key_values(listing, rows[-1])) if rows else None,
                    total=total, total_is_lower_bound=capped)


def page_of_rows(rows: Sequence[T], page: PageRequest, per_page: int) -> SeekPage[T]:
    """A page of a list already in memory (an aggregate sorted by a computed total, say), with the
    same cursors and links as a seek page: a cursor is a position in the list."""
    def position(cursor: str) -> int:
        index = decode_cursor(cursor, 1)[0]
        if not isinstance(index, int) or not 0 <= index < max(len(rows), 1):
            raise InvalidInput(_("That page link is not valid (the list has changed); start again from the first "
                                 "page."))
        return int(index)

    if page.after:
        start = position(page.after) + 1
    elif page.before:
        start = max(0, position(page.before) - per_page)
    elif page.last:
        start = max(0, len(rows) - per_page)
    else:
        start = 0
    items = list(rows[start:start + per_page])
    end = start + len(items)
    return SeekPage(items=items, has_prev=start > 0, has_next=end < len(rows),
                    prev_cursor=encode_cursor([start]) if items else None,
                    next_cursor=encode_cursor([end - 1]) if items else None, total=len(rows))
