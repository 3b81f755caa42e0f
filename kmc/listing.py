"""Lists that scale: one page of a query, sorted by a whitelisted column, narrowed by a substring.

Every list page (SMs, manufacturers, supply groups, keys, authorisations, key-load issues, the
audit log, users) goes through here: the feature's service names its `Listing` (what may be
sorted and searched) and applies it to its own query with `page_of`; the view reads the
`ListRequest` from the query string (`from_args`) and the page template renders it with the
macros of `templates/listing.html`. The query string holds everything, so a list is a link.

Nothing a person types reaches SQL as SQL: sort keys are looked up in the listing's table
(an unknown key falls back to the default), the search text is a bound LIKE pattern with its
wildcards escaped, and the page size is bounded by `MAX_PER_PAGE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, String, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from kmc.database import db

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
MAX_SEARCH = 100
PER_PAGE_CHOICES = (10, 25, 50, 100)

T = TypeVar("T")


@dataclass(frozen=True)
class Listing:
    """A list's rules: the columns people may sort by (URL name → column, the first is the
    default), the columns the search box looks in, and the columns that make the order total
    (so pages never repeat or skip a row)."""

    sorts: Mapping[str, Any]  # mapped attributes or column expressions
    searched: Sequence[Any]
    tiebreak: Sequence[Any]
    descending: bool = False  # the default sort's direction (newest first for logs)

    @property
    def default(self) -> str:
        return next(iter(self.sorts))


@dataclass(frozen=True)
class ListRequest:
    """What a person asked of a list: search text, sort key and direction, page and size."""

    q: str = ""
    sort: str = ""
    descending: bool | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ListRequest:
        """Read `q`, `sort`, `dir`, `page` and `per_page`; anything malformed is the default."""
        direction = args.get("dir", "")
        return cls(
            q=args.get("q", "").strip()[:MAX_SEARCH],
            sort=args.get("sort", ""),
            descending={"asc": False, "desc": True}.get(direction),
            page=max(_integer(args.get("page"), 1), 1),
            per_page=min(max(_integer(args.get("per_page"), DEFAULT_PER_PAGE), 1), MAX_PER_PAGE),
        )


def _integer(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() and len(value) < 10 else default


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, with what the template needs to draw its controls."""

    items: list[T]
    total: int
    asked: ListRequest  # as applied: a known sort key, a direction, a page that exists

    @property
    def pages(self) -> int:
        return max((self.total + self.asked.per_page - 1) // self.asked.per_page, 1)

    @property
    def first(self) -> int:
        """The 1-based position of the first item shown (0 when there is none)."""
        return (self.asked.page - 1) * self.asked.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """`column` holds `text` anywhere, case-insensitively; `%`, `_` and `\\` are literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(cast(column, String)).like(f"%{escaped.lower()}%", escape="\\")


def page_of(query: Select[tuple[T]], listing: Listing, asked: ListRequest) -> Page[T]:
    """The page `asked` of `query` (already narrowed by the feature's own filters)."""
    if asked.q:
        query = query.where(or_(*(contains(column, asked.q) for column in listing.searched)))
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    sort = asked.sort if asked.sort in listing.sorts else listing.default
    descending = listing.descending if asked.descending is None else asked.descending
    column = listing.sorts[sort]
    pages = max(((total or 0) + asked.per_page - 1) // asked.per_page, 1)
    applied = replace(asked, sort=sort, descending=descending, page=min(asked.page, pages))
    ordered = query.order_by(
        column.desc() if descending else column.asc(),
        *(c.desc() if descending else c.asc() for c in listing.tiebreak),
    )
    items: list[T] = list(
        db.session.scalars(
            ordered.limit(applied.per_page).offset((applied.page - 1) * applied.per_page)
        )
    )
    return Page(items, total or 0, applied)
