"""Where commands run: this machine's Docker engine (local.py) or a server's over SSH
(ssh.py). A Site is transport only; what to run is decided elsewhere (aini.docker builds
the commands, aini.deploy decides which) and every command passes through `Site.run`."""
