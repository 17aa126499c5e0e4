"""Docker networks shared across compose projects.

The proxy network has a fixed subnet so that Traefik has a fixed address: applications
trust X-Forwarded-* headers from that one address only. 10.87/24 stays clear of Docker's
default pools (172.17+/16, 192.168/20) and of Hetzner private networks' usual 10.0/16.
"""

PROXY_NETWORK = "aini-proxy"
PROXY_SUBNET = "10.87.0.0/24"
TRAEFIK_IP = "10.87.0.2"
