"""Which groups are backed up before an update: those holding data that a version change touches."""

from __future__ import annotations

import pytest

from aini.backup import scope
from aini.config import validate_data


def _config(**data):
    return validate_data({"domain": "example.org", "email": "a@example.org", "target": {"kind": "local"}, **data}, "t")


@pytest.mark.parametrize(("services", "groups"), [
    (["nextcloud"], ["nextcloud"]),
    (["mariadb", "librechat"], ["librechat", "nextcloud"]),  # the deploy's order, each group whole
    (["n8n"], ["n8n"]),  # its volume holds the encryption key; its database is in the group
    (["onlyoffice", "traefik"], ["traefik"]),  # OnlyOffice keeps nothing; Traefik its certificates
    (["meilisearch"], ["librechat"]),  # rebuilt, not saved, but its group holds MongoDB
    ([], []),
])
def test_the_groups_backed_up_before_an_update_are_those_holding_data(services, groups):
    assert scope.before_update(_config(), services) == groups


def test_the_plan_says_which_backup_comes_first_or_that_there_is_none():
    assert scope.before_update_line(_config(), []) is None
    assert scope.before_update_line(_config(), ["nextcloud"]) == \
        "! no backup before updating nextcloud: backup.repository is not set"
    assert scope.before_update_line(_config(backup={"repository": "/srv/restic"}), ["n8n", "nextcloud"]) == \
        "backup first: n8n, nextcloud (a run into backup.repository, before the group is touched)"
