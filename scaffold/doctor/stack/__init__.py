"""doctor's `stack.*` checks: the running containers, and requests sent through nginx to authentik.

`services` looks at the containers (state, applied .env, nginx's configuration test, WebSockets),
`flow` follows the login flow, `publicurl` compares the public URL with what authentik and nginx
were given, `clientaddr` checks which client address reaches authentik, `swarm` whether a Swarm
stack converged.
"""

from scaffold.doctor.stack import clientaddr, flow, publicurl, services, swarm

CHECKS = (*services.CHECKS, *swarm.CHECKS, *flow.CHECKS, *publicurl.CHECKS, *clientaddr.CHECKS)
