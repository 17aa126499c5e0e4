"""Docker networks shared across compose projects.

The proxy network has a fixed subnet so that Traefik has a fixed address: applications
trust X-Forwarded-* headers from that one address only. 10.87/24 stays clear of Docker's
default pools (172.17+/16, 192.168/20) and of Hetzner private networks' usual 10.0/16.
"""

PROXY_NETWORK = "aini-proxy"
PROXY_SUBNET = "10.87.0.0/24"
# Docker hands out addresses from here only, so the fixed ones below .128 are never taken by
# another container (which would keep the one with the fixed address from starting).
PROXY_DYNAMIC = "10.87.0.128/25"
TRAEFIK_IP = "10.87.0.2"
# The control plane at fixed addresses too: `aini up` talks to their APIs directly (local
# target) or through an SSH forward (servers), without going through Traefik's auth.
FIXED_IPS = {"traefik": TRAEFIK_IP, "vault": "10.87.0.3", "openbao": "10.87.0.3", "consul": "10.87.0.4"}
