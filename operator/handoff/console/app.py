"""The console's web application (aiohttp): its routes, one module per page under
``console/pages``, and the middlewares of ``console/web.py``."""

import jinja2
from aiohttp import web

from handoff.adapters.kube import KubeApi
from handoff.console import devlogin
from handoff.console.pages import feed, reports, requests, signin, slack
from handoff.console.slackidentity import Mapping as SlackMapping
from handoff.console.web import COOKIE, HERE, Config, end_refused_sessions, security_headers

__all__ = ["Config", "make_app"]


def make_app(config: Config, slack_bridge: slack.SlackBridge | None = None) -> web.Application:
    app = web.Application(middlewares=[security_headers, end_refused_sessions])
    app["config"] = config
    app["slack"] = slack_bridge
    app["own_api"] = KubeApi(config.credentials)
    if slack_bridge is not None:
        app["slack_mapping"] = SlackMapping(
            app["own_api"], slack_bridge.users_namespace, slack_bridge.users_configmap
        )
    app["templates"] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every agent-written string is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/", signin.index)
    app.router.add_get("/login", signin.login_page)
    app.router.add_post("/login", signin.login)
    app.router.add_post("/logout", signin.logout)
    app.router.add_get("/queue", requests.queue)
    app.router.add_get("/requests/{namespace}/{name}", requests.request_page)
    app.router.add_post("/requests/{namespace}/{name}/approve", requests.approve)
    app.router.add_post("/requests/{namespace}/{name}/deny", requests.deny)
    app.router.add_post("/requests/{namespace}/{name}/rollback", requests.rollback)
    app.router.add_get("/reports", reports.reports_page)
    app.router.add_get("/reports/calibration.svg", reports.calibration_plot)
    app.router.add_get("/feed", feed.feed_page)
    app.router.add_get("/feed/events", feed.feed_events)
    app.router.add_post("/slack/interactivity", slack.interactivity)
    app.router.add_get("/healthz", signin.healthz)
    app.router.add_static("/static", HERE / "static", show_index=False)
    if config.dev_logins is not None:
        devlogin.install(app, config.dev_logins, COOKIE)
    app.on_cleanup.append(_cleanup)
    return app


async def _cleanup(app: web.Application) -> None:
    await app["config"].sessions.close()
    await app["own_api"].close()
    if app["slack"] is not None:
        await app["slack"].api.close()
