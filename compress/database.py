"""A study's database as SQLAlchemy reaches it: the URL as it may be shown (no password), the
engine options per backend, and one line on why a URL cannot serve (checked at validation)."""

from __future__ import annotations


def shown(url: str) -> str:
    """The URL as it may be printed and recorded (no password)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (not a URL at all: printed as given)
        return url


def engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # several processes write one file
    return {"pool_pre_ping": True}


def storage_problem(url: str) -> str | None:
    """One line on what is wrong with ``url`` as the study's database (None: it answers). The
    database is reached here, at validation, so a bad URL stops a run before any training."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return (
            f"storage {url!r} is not a database URL: give SQLAlchemy's form, e.g. "
            "postgresql://user@host:5432/db (or sqlite:////shared/folder/study.db)"
        )
    where = shown(url)
    try:
        engine = create_engine(parsed, **engine_kwargs(url))
    except (ImportError, NoSuchModuleError) as exc:
        return (
            f"storage {where}: no database driver for {parsed.drivername!r} here ({exc}); for "
            "PostgreSQL: pip install 'lert-compress[postgres]'"
        )
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return (
            f"storage {where}: cannot reach the database ({cause[0] if cause else exc}); check "
            "its host, port, user and password, and that the database exists"
        )
    finally:
        engine.dispose()
    return None
