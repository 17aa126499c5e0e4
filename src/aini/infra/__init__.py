"""What AINI provisions and configures besides the stack: Hetzner Cloud resources
(hetzner.py, provision.py), the server's host playbook (server.py, ansible.py), and the
local target's CA (localca.py)."""
