"""Version changes against the catalog's upgrade rules: what the plan says per service and
what `aini up` refuses before anything changes. Pure: images in, judgments out."""

from __future__ import annotations

import pytest

from aini import catalog
from aini.deploy import plan as deploy_plan
from aini.deploy import versions
from aini.docker import engine

from .common import TOOLS, manifest, typed

NC = "docker.io/library/nextcloud"
PG = "docker.io/library/postgres"
RULES = {name: catalog.by_name(name).upgrade for name in ("nextcloud", "n8n-postgres", "mariadb", "mongodb", "n8n")}


@pytest.mark.parametrize("image, version", [
    ("docker.io/library/postgres:17.11-bookworm", (17, 11)),
    ("docker.io/library/traefik:v3.7.15", (3, 7, 15)),
    ("nextcloud:34.0.4-apache@sha256:" + "a" * 64, (34, 0, 4)),
    ("localhost:5000/mirror/mariadb:11.8.9", (11, 8, 9)),
    ("localhost:5000/mirror/mariadb", None),  # the port is no tag
    ("sha256:" + "b" * 64, None),  # an image ID
    ("3f1a2b4c5d6e", None),
    ("docker.io/library/nextcloud:stable", None),
])
def test_the_version_is_what_the_tag_starts_with(image, version):
    assert versions.version_of(image) == version


def test_docker_ps_short_names_are_the_same_image():
    assert versions.normal("nextcloud:34.0.4-apache") == f"{NC}:34.0.4-apache"
    assert versions.normal("getmeili/meilisearch:v1.35.1") == "docker.io/getmeili/meilisearch:v1.35.1"
    assert versions.normal("localhost:5000/x:1") == "localhost:5000/x:1"
    assert versions.version_changes({"nextcloud": "nextcloud:34.0.4-apache"}, {"nextcloud": f"{NC}:34.0.4-apache"},
                                    RULES) == ()


def judge(service: str, current: str, new: str) -> versions.VersionChange:
    (change,) = versions.version_changes({service: current}, {service: new}, RULES)
    return change


def test_nextcloud_one_major_up_is_made_by_its_entrypoint():
    change = judge("nextcloud", f"{NC}:33.0.2-apache", f"{NC}:34.0.4-apache")
    assert change.refused is None
    assert change.line() == ("~ nextcloud      33.0.2-apache → 34.0.4-apache: "
                             "33 → 34: the image's entrypoint runs occ upgrade on start")


def test_a_nextcloud_pin_that_skips_majors_is_refused_with_the_path():
    change = judge("nextcloud", f"{NC}:32.0.5-apache", f"{NC}:35.0.1-apache")
    assert change.path == "32 → 33 → 34 → 35"
    assert change.line() == "~ nextcloud      32.0.5-apache → 35.0.1-apache: refused (32 → 33 → 34 → 35)"
    assert change.refused.startswith("nextcloud 32.0.5-apache → 35.0.1-apache skips a major release; nextcloud "
                                     "moves one major at a time (nextcloud/docker entrypoint")
    assert change.refused.endswith(": 32 → 33 → 34 → 35. Deploy each in turn with images.overrides.nextcloud")


@pytest.mark.parametrize("service, current, new", [
    ("nextcloud", f"{NC}:34.0.4-apache", f"{NC}:34.0.3-apache"),  # its entrypoint compares the whole version
    ("n8n-postgres", f"{PG}:17.11-bookworm", f"{PG}:16.9-bookworm"),
    ("mariadb", "docker.io/library/mariadb:11.8.9", "docker.io/library/mariadb:11.4.8"),
])
def test_a_downgrade_onto_newer_data_is_refused(service, current, new):
    change = judge(service, current, new)
    assert change.path == "downgrade"
    assert f"is a downgrade, and {service} cannot open data a newer version wrote" in change.refused
    assert f"images.overrides.{service}" in change.refused


@pytest.mark.parametrize("service, current, new", [
    ("n8n-postgres", f"{PG}:17.11-bookworm", f"{PG}:17.9-bookworm"),
    ("mariadb", "docker.io/library/mariadb:11.8.9", "docker.io/library/mariadb:11.8.3"),
    ("n8n-postgres", f"{PG}:17.11-bookworm", f"{PG}:17.12-bookworm"),
    ("mariadb", "docker.io/library/mariadb:11.8.3", "docker.io/library/mariadb:11.8.9"),
    ("n8n", "docker.n8n.io/n8nio/n8n:2.40.7", "docker.n8n.io/n8nio/n8n:1.0.0"),  # no rule: just deployed
])
def test_within_a_major_or_without_a_rule_the_change_is_just_deployed(service, current, new):
    change = judge(service, current, new)
    assert change.refused is None and change.path == ""


def test_postgres_across_majors_moves_the_data_by_dump_and_a_new_cluster():
    change = judge("n8n-postgres", f"{PG}:15.14-bookworm", f"{PG}:17.11-bookworm")
    assert change.refused is None and change.moves
    assert change.line() == ("~ n8n-postgres   15.14-bookworm → 17.11-bookworm: 15 → 17: dump, new cluster, restore "
                             "(the old cluster kept until the next backup)")
    assert not judge("n8n-postgres", f"{PG}:17.9-bookworm", f"{PG}:17.11-bookworm").moves  # same major: in place
    assert not judge("mariadb", "docker.io/library/mariadb:10.11.14", "docker.io/library/mariadb:11.8.9").moves


def test_mariadb_across_majors_is_upgraded_by_its_image():
    change = judge("mariadb", "docker.io/library/mariadb:10.11.14", "docker.io/library/mariadb:11.8.9")
    assert change.refused is None
    assert change.path.startswith("10.11 → 11.8: the image's mariadb-upgrade on start (MARIADB_AUTO_UPGRADE)")


def test_mongodb_moves_one_series_at_a_time():
    change = judge("mongodb", "docker.io/library/mongo:6.0.20", "docker.io/library/mongo:8.0.30")
    assert change.path == "6.0 → 7.0 → 8.0" and "skips a major release" in change.refused


def test_an_image_whose_version_cannot_be_told_is_refused_for_a_service_with_data_rules():
    change = judge("nextcloud", f"{NC}:34.0.4-apache", f"{NC}:stable")
    assert change.path == "version unknown"
    assert "cannot tell the version of docker.io/library/nextcloud:stable" in change.refused


def test_the_current_image_is_the_containers_unless_it_is_an_image_id():
    deployed = typed(manifest(nextcloud="h"))  # img/nextcloud:1
    assert versions.current_images({"nextcloud": "3f1a2b4c5d6e"}, deployed) == {"nextcloud": "img/nextcloud:1"}
    assert versions.current_images({"nextcloud": "nextcloud:33.0.2-apache"}, deployed) == {
        "nextcloud": "nextcloud:33.0.2-apache"}
    assert versions.current_images({"redis": "3f1a2b4c5d6e"}, None) == {"redis": "3f1a2b4c5d6e"}


def test_a_new_service_has_no_change_and_the_refusal_lists_each_refused_one():
    changes = versions.version_changes(
        {"nextcloud": f"{NC}:32.0.5-apache", "mongodb": "mongo:7.0.14"},
        {"nextcloud": f"{NC}:34.0.4-apache", "mongodb": "mongo:8.0.30", "n8n-postgres": f"{PG}:17.11-bookworm"},
        RULES)
    assert [c.service for c in changes] == ["nextcloud", "mongodb"]
    message = versions.refusal(changes)
    assert message.splitlines()[0] == "refused before anything changed:"
    assert [line[:16] for line in message.splitlines()[1:]] == ["  - nextcloud 32", "  - mongodb 7.0."]
    assert versions.refusal(()) is None


def test_the_deploy_plan_shows_version_changes_after_the_groups():
    m = manifest(traefik="a")
    p = deploy_plan.plan(typed(m), typed(m), {"traefik": {"traefik"}}, {})
    change = judge("nextcloud", f"{NC}:33.0.2-apache", f"{NC}:34.0.4-apache")
    p = deploy_plan.DeployPlan(p.actions, p.images, p.networks, (change,))
    assert p.lines() == ["= traefik        skip unchanged",
                         "~ nextcloud      33.0.2-apache → 34.0.4-apache: "
                         "33 → 34: the image's entrypoint runs occ upgrade on start"]
    assert p.only(["traefik"], typed(m)).versions == (change,)


def test_the_containers_images_are_read_from_docker_ps():
    out = ("nextcloud\tnextcloud\trunning\taini-nextcloud\tnextcloud:33.0.2-apache\n"
           "nextcloud\tmariadb\texited\taini-mariadb\tmariadb:11.8.9\n"
           "traefik\ttraefik\trunning\taini-traefik\n")  # an older format without the image: ignored
    assert engine.parse_images(out) == {"nextcloud": "nextcloud:33.0.2-apache", "mariadb": "mariadb:11.8.9"}
    assert engine.parse_running(out) == {"nextcloud": {"nextcloud"}, "traefik": {"traefik"}}
    assert engine.containers_cmd(TOOLS, "p").argv[-1].endswith("\t{{.Image}}")


def test_a_content_hash_tag_is_no_version_and_a_doubles_tag_names_the_one_it_stands_for():
    assert versions.version_of("aini-e2e/nextcloud-double:8f2a0c1d3e4b") is None
    assert versions.version_of("aini-e2e/nextcloud-double:34.0.4-apache-8f2a0c1d3e4b") == (34, 0, 4)
    assert versions.version_of("docker.io/library/mongo:8.0.30") == (8, 0, 30)


def test_a_change_across_a_major_says_so_either_way():
    MDB = "docker.io/library/mariadb"
    assert judge("mariadb", f"{MDB}:10.11.14", f"{MDB}:11.8.9").major
    assert not judge("mariadb", f"{MDB}:11.8.9", f"{MDB}:11.8.10").major
    back = judge("mariadb", f"{MDB}:11.8.9", f"{MDB}:10.11.14")
    assert back.refused and back.major
    assert not judge("mariadb", f"{MDB}:11.8.10", f"{MDB}:11.8.9").major  # a downgrade within the series


def test_the_way_back_across_a_major_makes_a_new_cluster_only_for_a_dump():
    from aini.deploy.apply import new_clusters

    changes = [judge("mariadb", "docker.io/library/mariadb:11.8.9", "docker.io/library/mariadb:10.11.14"),
               judge("nextcloud", f"{NC}:34.0.4-apache", f"{NC}:33.0.2-apache"),
               judge("n8n-postgres", f"{PG}:17.11-bookworm", f"{PG}:15.14-bookworm"),
               judge("n8n-postgres", f"{PG}:17.11-bookworm", f"{PG}:17.9-bookworm")]
    # Nextcloud's files are volumes restored whole; the databases' dumps need an empty cluster
    assert new_clusters(changes) == ["mariadb", "n8n-postgres"]
