"""Build a gateway from its config and run it under uvicorn (with graceful drain).

``build_gateway`` wires the pieces — store, routes and classifier, security policy
and access log, model pool — without loading models (they load when the app
starts). ``run_gateway`` serves it: the first SIGTERM drains (``/ready`` 503, new
requests 503, streams in flight finish up to ``drain_deadline_s``), then exit 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.context import Context
from llmpick.errors import ConfigError
from llmpick.serve.accesslog import AccessLog, load_or_create_secret
from llmpick.serve.app import create_app
from llmpick.serve.drain import DrainingServer, DrainMiddleware, DrainState
from llmpick.serve.gateway import Gateway, GatewayConfig
from llmpick.serve.requestlog import RequestLog
from llmpick.serve.routing import RouteTable, load_route_table, train_classifier
from llmpick.serve.security import SecurityPolicy
from llmpick.serve.uiadmission import KeyAdmission, admission_for
from llmpick.store import open_store
from llmpick.ui import Workbench

__all__ = ["build_gateway", "build_workbench", "explain_routes", "run_gateway"]


def build_gateway(context: Context, config: GatewayConfig) -> Gateway:
    """The gateway for ``config``: the bundled models when nothing else is named."""
    store = open_store(config.db)
    routes: RouteTable | None = None
    classifier = None
    if config.routes_from:
        routes = load_route_table(config.routes_from, store)
        classifier = train_classifier(store, routes)
    if not config.models and routes is None:
        config = config.model_copy(update={"models": list(BUNDLED_MODELS)})
    access_log = None
    if config.security.access_log is not None:
        secret = load_or_create_secret(config.security.log_secret_file)
        access_log = AccessLog(
            config.security.access_log, secret, log_text=config.security.log_text
        )
    policy = SecurityPolicy(store, config.security, access_log=access_log)
    return Gateway(
        context,
        config,
        pool=ModelPool(context, _serving_pool(config.pool)),
        policy=policy,
        routes=routes,
        classifier=classifier,
        request_log=RequestLog(store),
    )


def _serving_pool(options: PoolOptions) -> PoolOptions:
    """Serving defaults on, unless llmpick.yaml's ``serve.pool`` turned them off."""
    if "serving_defaults" in options.model_fields_set:
        return options
    return options.model_copy(update={"serving_defaults": True})


def build_workbench(
    gateway: Gateway, prefix: str = "/ui", *, allow_any_model: bool = False
) -> Workbench:
    """The workbench for ``llmpick serve --ui``: the gateway's store, pool and keys.

    A valid gateway key logs in; while no key exists the pages answer only
    clients on this machine. Columns use the served models (and llmpick.yaml's,
    and the bundled ones) unless ``allow_any_model``, and each generation is
    admitted as the logged-in key's API calls are.
    """
    policy = gateway.policy

    async def admission(secret: str | None) -> KeyAdmission | None:
        return await admission_for(policy, secret) if policy is not None else None

    return Workbench(
        gateway.context,
        gateway.config.db,
        prefix=prefix,
        key_check=policy.key_owner if policy is not None else None,
        keys_required=policy.keys_required if policy is not None else None,
        pool=gateway.pool,
        served=lambda: list(gateway.served),
        allow_any_model=allow_any_model,
        admission=admission,
    )


def explain_routes(table: RouteTable) -> list[dict[str, Any]]:
    """One row per category: the model, its score and interval, the runner-up, why."""
    rows: list[dict[str, Any]] = []
    for route in [*table.categories.values(), table.overall]:
        first = route.models[0] if route.models else None
        second = route.models[1] if len(route.models) > 1 else None
        rows.append(
            {
                "category": route.category,
                "n": route.n,
                "model": first,
                "mean": route.means.get(first) if first else None,
                "ci95": route.ci95.get(first) if first else None,
                "runner_up": second,
                "runner_up_mean": route.means.get(second) if second else None,
                "fallbacks": route.models[1:],
                "why": route.reason,
            }
        )
    return rows


def run_gateway(
    gateway: Gateway,
    *,
    drain_deadline_s: float = 30.0,
    workbench: Workbench | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until SIGTERM/SIGINT, draining first (with the workbench when given)."""
    app = create_app(gateway, workbench)
    state = DrainState()
    config = uvicorn.Config(
        DrainMiddleware(app, state),
        host=gateway.config.host,
        port=gateway.config.port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(drain_deadline_s),
        http=gateway.config.http_parser,
    )
    with asyncio.Runner(loop_factory=_loop_factory(gateway.config.event_loop)) as runner:
        runner.run(DrainingServer(config, state, drain_deadline_s).serve())


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory: uvloop's for "uvloop", and for "auto" when installed; else None."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # a dependency except on Windows, where uvloop does not exist
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "serve.event_loop is uvloop but uvloop is not installed",
                "pip install uvloop, or set serve.event_loop: auto",
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
