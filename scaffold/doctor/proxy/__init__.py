"""doctor's `proxy.*` checks: what nginx passes to authentik, and whom it believes about the client."""

from scaffold.doctor.core import Check
from scaffold.doctor.proxy.headers import check_proxy_headers
from scaffold.doctor.proxy.realip import check_real_ip

CHECKS = (
    Check("proxy.headers", check_proxy_headers),
    Check("proxy.real-ip", check_real_ip),
)
