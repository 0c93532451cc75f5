"""``llmpick keys``: API keys for ``llmpick serve`` (create, list, revoke)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llmpick.cli._common import TableOrJson, console, err_console, print_json
from llmpick.serve.keys import KeyStore, parse_expiry
from llmpick.store import DEFAULT_DB, open_store

DbOption = Annotated[
    Path, typer.Option("--db", help="SQLite file the gateway reads its keys from.")
]

RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help="Also copy the keys (hashes, limits, state) to this Redis, where gateway "
        "replicas started with --redis read them (redis://HOST:PORT/DB).",
    ),
]

keys_app = typer.Typer(
    name="keys",
    help="API keys for llmpick serve: the key is shown once; the store keeps only its hash.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``keys`` group to ``app``."""
    app.add_typer(keys_app)


@keys_app.command("create")
def create_command(
    name: Annotated[str, typer.Option("--name", help="Who the key is for (unique).")],
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="Tokens per minute (input + output).")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated models/routes the key may use."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="A duration (30d, 12h) or a date.")
    ] = None,
    db: DbOption = DEFAULT_DB,
    redis_url: RedisOption = None,
) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    expires_at = parse_expiry(expires) if expires else None
    with open_store(db) as store:
        keys = KeyStore(store)
        key, secret = keys.create(name, rpm=rpm, tpm=tpm, models=allowed, expires_at=expires_at)
        if redis_url:
            keys.sync_to_redis(redis_url)
    err_console.print(
        f"created key '{key.name}' (id {key.id}); store it now, it is not shown again:"
    )
    typer.echo(secret)


@keys_app.command("list")
def list_command(
    db: DbOption = DEFAULT_DB,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.table,
) -> None:
    """List keys (names, limits, state; never the keys)."""
    with open_store(db) as store:
        keys = KeyStore(store).list()
    if output_format is TableOrJson.json:
        print_json([{**k.model_dump(), "state": k.state()} for k in keys])
        return
    table = Table("id", "name", "state", "rpm", "tpm", "models", "created", "expires")
    for k in keys:
        table.add_row(
            k.id,
            k.name,
            k.state(),
            str(k.rpm or "-"),
            str(k.tpm or "-"),
            ",".join(k.models) if k.models else "any",
            k.created_at,
            k.expires_at or "never",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The key's name or id.")],
    db: DbOption = DEFAULT_DB,
    redis_url: RedisOption = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    with open_store(db) as store:
        keys = KeyStore(store)
        key = keys.revoke(name)
        if redis_url:
            keys.sync_to_redis(redis_url)
    console.print(f"revoked key '{key.name}' (id {key.id})")


@keys_app.command("sync")
def sync_command(
    redis_url: Annotated[str, typer.Option("--redis", help="redis://HOST:PORT/DB")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Copy every key of the store (hashes, limits, state) to Redis for gateway replicas."""
    with open_store(db) as store:
        n = KeyStore(store).sync_to_redis(redis_url)
    console.print(f"copied {n} keys to {redis_url}")
