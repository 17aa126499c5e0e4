"""What the tests stand on: sandbox hosts, their images and the local Docker engine."""
