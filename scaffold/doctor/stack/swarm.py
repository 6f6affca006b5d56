"""doctor on a `target: swarm` project: has the stack converged?

On Swarm a service is a desired state, not a container: Swarm reports how many of its tasks run (with a
health check, a task counts as running only once healthy) and whether its last update completed, rolled
back or paused. The container checks (`stack.service.*`, the WebSocket, the login flow, the client
address) look at the task containers on this node; this one looks at the whole swarm, from a manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaffold.doctor.core import SERVICES, Check, Context, Outcome, fail, ok, skip, warn

if TYPE_CHECKING:
    from scaffold.dockerapi import SwarmService

FAILED_UPDATES = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


def judge(project: str, found: list[SwarmService]) -> Outcome:
    """The verdict on a stack from what Swarm reports about its services."""
    services = {s.name.removeprefix(f"{project}_"): s for s in found}
    if not services:
        return fail(
            f"no service of the stack '{project}' on this swarm (or this daemon is not a manager)",
            "deploy it on a manager with `scaffold deploy` (`docker node ls` lists the managers)",
        )
    problems, pending = [], []
    for name in SERVICES:
        service = services.get(name)
        if service is None:
            problems.append(f"{name}: not deployed")
            continue
        where = f"{name}: {service.running}/{service.desired} tasks running"
        if service.update_state in FAILED_UPDATES:
            problems.append(f"{name}: update {service.update_state} ({service.update_message})")
        elif service.update_state == "updating":
            pending.append(f"{name}: update in progress")
        if service.desired == 0:
            problems.append(
                f"{name}: no task wanted (scaled to 0, or no node labelled for it: "
                "`docker node update --label-add authentik.edge=true NODE`)"
            )
        elif service.running < service.desired:
            reason = f" ({service.task_error})" if service.task_error else ""
            pending.append(where + reason)
    total = sum(s.running for s in services.values())
    if problems:
        return fail(
            "the stack has not converged: " + "; ".join(problems + pending),
            f"`docker stack ps --no-trunc {project}` shows each task's error; fix it, then `scaffold deploy`",
        )
    if pending:
        return warn(
            "the stack is converging: " + "; ".join(pending),
            f"wait a minute, then run doctor again; `docker stack ps --no-trunc {project}` says "
            "why a task does not run",
        )
    return ok(f"every service of the stack converged ({total} tasks running and healthy)")


def check_swarm_services(ctx: Context) -> Outcome:
    if ctx.answers.target != "swarm":
        return skip("not checked: the project's target is compose (one machine)")
    if ctx.docker is None:
        return skip("not checked: the Docker daemon cannot be used (see stack.docker)")
    return judge(ctx.project, ctx.docker.stack_services(ctx.project))


CHECKS = (Check("stack.swarm-services", check_swarm_services),)
