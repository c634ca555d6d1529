"""`sentry-port map`: preview a mapping on raw items without Dagster."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

from sentry_port_assets.cli import main
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE

SAMPLES = json.loads((Path(__file__).resolve().parent.parent / "sentry_port_assets/sentry/seed_samples.json").read_text())


def raw_file(tmp_path, data) -> str:
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(data))
    return str(path)


def issue(env_names, **changes):
    item = copy.deepcopy(SAMPLES["Issue"])
    item.update(changes)
    item["__tags"] = [{"name": n} for n in env_names]
    return item


def test_prints_entities_sorted_by_blueprint_then_identifier(tmp_path, capsys):
    raw = raw_file(tmp_path, {
        "team": [SAMPLES["Team"]],
        "issue-tag": [issue(["staging", "production"])],
        "user": [SAMPLES["User"]],
        "project-tag": {"environment": [SAMPLES["Project environment"]]},  # the raw asset's shape is flattened
    })
    assert main(["map", "--raw", raw]) == 0
    captured = capsys.readouterr()
    entities = json.loads(captured.out)
    assert [(e["blueprint"], e["identifier"]) for e in entities] == [
        ("_user", "developer@getport.io"),
        ("sentryIssue", "4605173695-production"),
        ("sentryIssue", "4605173695-staging"),
        # the seed's resource and the bundled default's relation to the project: Port merges the two
        ("sentryProjectEnvironment", "python-fastapi-production"),
        ("sentryProjectEnvironment", "python-fastapi-production"),
        ("sentryTeam", "platform-team"),
        ("sentryUser", "developer@getport.io"),
    ]
    assert "7 entities from 6 raw item(s)" in captured.err  # the project-tag row is read by two resources
    assert "misconfiguration" not in captured.err


def test_misconfigurations_go_to_stderr(tmp_path, capsys):
    raw = raw_file(tmp_path, {"issue-tag": [issue(["production"], assignedTo=None)]})
    assert main(["map", "--raw", raw]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1
    assert "misconfiguration" not in captured.err  # an unassigned issue's null is the data's
    assert ("null in the data: resources[3] (issue-tag) relations.assignee.rules[0].value: '.assignedTo.email'"
            in captured.err)
    assert "'4605173695'" in captured.err

    typo = tmp_path / "typo.yaml"
    typo.write_text(DEFAULT_MAPPING_FILE.read_text().replace("status: .status\n          isUnhandled",
                                                             "status: .stauts\n          isUnhandled"))
    assert main(["map", "--mapping", str(typo), "--raw", raw]) == 0
    captured = capsys.readouterr()
    assert "misconfiguration: resources[3] (issue-tag) properties.status: '.stauts'" in captured.err


def test_custom_mapping_applies_regardless_of_tag(tmp_path, capsys):
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "resources:\n- kind: project-tag\n  selector: {query: 'true', tag: release}\n"
        "  port: {entity: {mappings: {identifier: '.slug + \"@\" + .__tags.name', blueprint: '\"rel\"'}}}\n"
    )
    raw = raw_file(tmp_path, {"project-tag": [SAMPLES["Project environment"]]})
    assert main(["map", "--mapping", str(mapping), "--raw", raw]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"identifier": "python-fastapi@production", "blueprint": "rel", "properties": {}, "relations": {}}
    ]


def test_bad_mapping_exit_2(tmp_path, capsys):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("resources:\n- kind: user\n  port: {entity: {mappings: {identifier: '.a |', blueprint: '\"b\"'}}}\n")
    raw = raw_file(tmp_path, {"user": []})
    assert main(["map", "--mapping", str(mapping), "--raw", raw]) == 2
    err = capsys.readouterr().err
    assert "resources[0]" in err and "identifier" in err and "'.a |'" in err


def test_unknown_kind_and_unreadable_raw_exit_2(tmp_path, capsys):
    assert main(["map", "--raw", raw_file(tmp_path, {"users": []})]) == 2
    assert "unknown: ['users']" in capsys.readouterr().err
    assert main(["map", "--raw", str(tmp_path / "missing.json")]) == 2
    assert "cannot read raw items" in capsys.readouterr().err


def test_selector_error_exit_1(tmp_path, capsys):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("resources:\n- kind: user\n  selector: {query: .email}\n  port: {entity: {mappings: {identifier: .email, blueprint: '\"b\"'}}}\n")
    assert main(["map", "--mapping", str(mapping), "--raw", raw_file(tmp_path, {"user": [SAMPLES["User"]]})]) == 1
    err = capsys.readouterr().err
    assert "error: resources[0] (user) selector.query" in err and "boolean" in err


def test_console_script_entry_point(tmp_path):
    raw = raw_file(tmp_path, {"user": [SAMPLES["User"]]})
    proc = subprocess.run([sys.executable, "-m", "sentry_port_assets.cli", "map", "--raw", raw],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2
