"""Backups with restic: what each service needs saved (plan.py, from the catalog's
`Backup` entries) as commands for the site (aini.docker.restic)."""
