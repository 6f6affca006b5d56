"""Deciding the proxy network's subnets and authentik's trusted CIDRs.

authentik trusts each proxy subnet without its gateway (the Docker host); see
`scaffold.subnets.trusted_ranges` for why. A value scaffold wrote before (the whole subnet) is
simply recomputed, so `scaffold detect` and the hook of `scaffold update` migrate it.

The truth, in order: a subnet the user pinned (answer or `# pinned` in .env); the subnet of
the project's proxy network when Docker already has it (found by Compose's or, on Swarm, the
stack's labels: the overlay network exists once `scaffold deploy` ran); the value
already in .env when it is still free; else a free subnet chosen for this project. Any
disagreement between .env and Docker is reported, never left silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scaffold import envkeys
from scaffold.answers import Answers
from scaffold.dockerapi import DockerAPI, DockerNetwork, occupied_by_networks
from scaffold.envfile import EnvDocument
from scaffold.errors import SubnetError
from scaffold.hostroutes import host_routes
from scaffold.subnets import (
    IPAddress,
    Network,
    Occupied,
    check_user_subnet,
    choose_free,
    gateway_of,
    overlapping,
    parse_subnet,
    parse_trusted_cidrs,
    trusted_cidrs,
    trusted_gateways,
    trusted_ranges,
    uncovered,
    v4_candidates,
    v6_candidates,
)

PROXY_NETWORK = "proxy"


@dataclass
class SubnetDecision:
    """The values for the subnet keys, and what the user must hear about them."""

    values: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Problems the user must fix; each says how. Non-empty means `scaffold detect` fails.
    errors: list[str] = field(default_factory=list)
    verified: bool = True
    network: DockerNetwork | None = None


@dataclass
class _Inputs:
    answers: Answers
    env: EnvDocument
    own: DockerNetwork | None
    occupied: list[Occupied]


def _occupied(
    docker: DockerAPI | None, own: DockerNetwork | None, networks: list[DockerNetwork]
) -> list[Occupied]:
    taken = occupied_by_networks(networks, exclude=own)
    if docker is None or docker.is_local:
        skip = own.bridge_name if own else None
        taken += [route for route in host_routes() if not (skip and route.owner.endswith(f"via {skip}"))]
    return taken


def _decide_one(
    inputs: _Inputs, key: str, answer: str, version: int, decision: SubnetDecision
) -> Network | None:
    """Decide one address family's subnet: pinned, else from Docker, else existing or free.

    None when it cannot be decided (the error is recorded).
    """
    env = inputs.env
    current_text = env.get(key) or ""
    own_subnets = [s for s in (inputs.own.subnets if inputs.own else ()) if s.version == version]
    actual = own_subnets[0] if own_subnets else None

    pinned_by = "the answer proxy_subnet" if version == 4 else "the answer proxy_subnet_v6"
    wanted_text = answer if answer != "auto" else None
    if env.is_pinned(key) and current_text:
        wanted_text, pinned_by = current_text, f"`# pinned` in .env ({key})"
    if wanted_text is not None:
        return _pinned(inputs, key, version, decision, wanted_text, pinned_by, actual)
    if actual is None and inputs.own is not None:
        decision.errors.append(
            f"{key}: Docker's network '{inputs.own.name}' has no IPv{version} subnet (it was created before "
            f"IPv{version} was turned on). fix: recreate it with `docker compose down && "
            "docker compose up -d` (volumes and data are kept)"
        )
    if actual is not None:
        if current_text and current_text != str(actual):
            name = inputs.own.name if inputs.own else "?"
            decision.notes.append(f"{key}: .env had {current_text}, Docker's network '{name}' has {actual}")
        return actual
    return _existing_or_free(inputs, key, version, decision, current_text)


def _pinned(
    inputs: _Inputs,
    key: str,
    version: int,
    decision: SubnetDecision,
    wanted_text: str,
    pinned_by: str,
    actual: Network | None,
) -> Network | None:
    """The subnet an answer or a `# pinned` line asks for, checked against Docker and the host."""
    try:
        wanted = parse_subnet(wanted_text)
        if wanted.version != version:
            raise SubnetError(
                f"{wanted} is not an IPv{version} subnet", hint=f"give an IPv{version} CIDR for {key}"
            )
        if actual is None:
            check_user_subnet(wanted, inputs.occupied)
    except SubnetError as exc:
        decision.errors.append(f"{key}: {exc.message} (set by {pinned_by}); fix: {exc.hint}")
        return None
    if actual is not None and actual != wanted:
        name = inputs.own.name if inputs.own else "?"
        decision.errors.append(
            f"{key}: Docker's network '{name}' has {actual}, but {pinned_by} says {wanted}. "
            "fix: recreate the network with `docker compose down && docker compose up -d` (volumes "
            f"and data are kept), or change the pin to {actual}"
        )
    return wanted


def _existing_or_free(
    inputs: _Inputs, key: str, version: int, decision: SubnetDecision, current_text: str
) -> Network | None:
    """Without a network yet: keep the subnet .env has while it is still free, else choose a free one."""
    if current_text:
        try:
            current = parse_subnet(current_text)
        except SubnetError:
            decision.notes.append(f"{key}: '{current_text}' in .env is not a subnet; choosing a new one")
        else:
            clashes = overlapping(current, inputs.occupied)
            if current.version == version and not clashes:
                return current
            if clashes:
                decision.notes.append(
                    f"{key}: {current} in .env now overlaps {clashes[0].network} ({clashes[0].owner}); "
                    "choosing a free one"
                )
    project = inputs.answers.project_name
    candidates = v4_candidates(project) if version == 4 else v6_candidates(project)
    try:
        return choose_free(candidates, inputs.occupied)
    except SubnetError as exc:
        decision.errors.append(f"{key}: {exc.message}; fix: {exc.hint}")
        return None


def _check_cidrs(
    value: str, ranges: list[Network], gateways: list[IPAddress], decision: SubnetDecision
) -> None:
    """Check a pinned value, never change it: it must cover every address nginx may have; trusting
    the gateway (the Docker host) is said, not corrected."""
    networks, skipped = parse_trusted_cidrs(value)
    if value.strip().startswith("["):
        decision.errors.append(
            f"{envkeys.TRUSTED_CIDRS} looks like JSON; authentik reads a comma-separated list and "
            "would trust nothing. fix: write it as 10.1.2.0/28,fd00::/64 (or remove `# pinned` so "
            "scaffold manages it)"
        )
        return
    if skipped:
        decision.errors.append(
            f"{envkeys.TRUSTED_CIDRS}: authentik skips {', '.join(skipped)} (not CIDRs). "
            "fix: correct or remove them"
        )
    missing = uncovered(ranges, networks)
    if missing:
        decision.errors.append(
            f"{envkeys.TRUSTED_CIDRS} (pinned) does not cover {', '.join(map(str, missing))} of the proxy "
            "network, where nginx may be: authentik will ignore nginx's headers. fix: write "
            f"{trusted_cidrs(ranges)}, or remove `# pinned` so scaffold manages it"
        )
    exposed = trusted_gateways(networks, gateways)
    if exposed:
        decision.notes.append(
            f"{envkeys.TRUSTED_CIDRS} (pinned) trusts the proxy network's gateway "
            f"{', '.join(map(str, exposed))}, i.e. the Docker host: any process on the host can set "
            f"X-Forwarded-For. Kept as pinned; to trust only nginx's network write {trusted_cidrs(ranges)}, "
            "or remove `# pinned` so scaffold manages it"
        )


def decide_subnets(answers: Answers, env: EnvDocument, docker: DockerAPI | None) -> SubnetDecision:
    """Values for PROXY_SUBNET(_V6) and the trusted CIDRs. `docker=None` means unreachable."""
    decision = SubnetDecision(verified=docker is not None)
    networks = docker.networks() if docker is not None else []
    own = next((n for n in networks if n.belongs_to(answers.project_name, PROXY_NETWORK)), None)
    decision.network = own
    inputs = _Inputs(answers, env, own, _occupied(docker, own, networks))

    subnets: list[Network] = []
    families = [(envkeys.PROXY_SUBNET, answers.proxy_subnet, 4)]
    if answers.enable_ipv6:
        families.append((envkeys.PROXY_SUBNET_V6, answers.proxy_subnet_v6, 6))
    for key, answer, version in families:
        subnet = _decide_one(inputs, key, answer, version, decision)
        if subnet is not None:
            subnets.append(subnet)
            decision.values[key] = str(subnet)
    if decision.errors and len(subnets) < len(families):
        return decision

    reported = list(own.gateways) if own is not None else []
    ranges = trusted_ranges(subnets, reported)
    cidrs_now = env.get(envkeys.TRUSTED_CIDRS) or ""
    if env.is_pinned(envkeys.TRUSTED_CIDRS) and cidrs_now:
        _check_cidrs(cidrs_now, ranges, [gateway_of(s, reported) for s in subnets], decision)
    else:
        decision.values[envkeys.TRUSTED_CIDRS] = trusted_cidrs(ranges)
    return decision
