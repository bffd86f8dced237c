"""Where a search shared by machines lives: its database as SQLAlchemy reaches it (the URL as it
may be shown, without its password; the engine options per backend) and its artifact store (a
shared folder, or an S3-compatible bucket), each with one line on why it cannot serve, checked
when the recipe is read."""

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


def s3_bucket(spec: str) -> str | None:
    """The bucket of an ``s3://BUCKET`` store (None: a folder)."""
    if not spec.startswith("s3://"):
        return None
    return spec.removeprefix("s3://").strip("/")


def s3_client():
    import boto3

    return boto3.client("s3")  # endpoint, region and keys as boto3 reads them (AWS_* variables)


def artifacts_problem(spec: str) -> str | None:
    """One line on why the artifact store cannot serve (None: it can)."""
    from pathlib import Path

    bucket = s3_bucket(spec)
    if bucket is None:
        folder = Path(spec)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return (
                f"artifacts {spec}: cannot make the folder ({exc.strerror}); give a folder every "
                "worker mounts, or s3://BUCKET"
            )
        return None
    if not bucket or "/" in bucket:
        return f"artifacts {spec!r}: give s3://BUCKET (a bucket, no folder inside it)"
    try:
        client = s3_client()
    except ImportError:
        return f"artifacts {spec}: an S3 store needs boto3: pip install 'lert-compress[s3]'"
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001  (botocore's errors: no endpoint, no bucket, keys)
        line = str(exc).strip().splitlines()
        return (
            f"artifacts {spec}: cannot reach the bucket ({line[0] if line else exc}); check "
            "AWS_ENDPOINT_URL, the keys and that the bucket exists"
        )
    return None
