"""Unit tests for filter_plugins/release_history.py: slots, release state, rollbacks, pruning."""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import deploy_lock
import pytest
import release_history
from ansible.errors import AnsibleFilterError
from edge_upstream import serving_release, upstream_text
from hypothesis import given
from hypothesis import strategies as st
from release_history import (
    FilterModule,
    history_lines,
    images_to_prune,
    other_slot,
    previous_release,
    record_release,
    release_state,
    resolve_release,
    retained_releases,
)

REPO = "registry.test:5000/melk-ai"


def full_sha(n: int) -> str:
    """A distinct 40-character sha per n, with distinct first 8 characters."""
    return f"{n:08x}" * 5


A, B, C, D, E, F, G = (full_sha(n) for n in range(0xA1, 0xA8))

_clock = itertools.count()


def entry(
    sha: str,
    status: str = "succeeded",
    kind: str = "deploy",
    slot: str | None = "blue",
    message: str = "",
    from_sha: str | None = None,
) -> dict[str, Any]:
    tick = next(_clock)
    return {
        "sha": sha,
        "image": f"{REPO}:{sha}",
        "slot": slot,
        "kind": kind,
        "status": status,
        "at": f"2026-11-27T04:{tick // 60 % 60:02d}:{tick % 60:02d}Z",
        "by": "alice@ctl",
        "message": message,
        "from_sha": from_sha,
    }


def step(
    state: dict[str, Any],
    sha: str,
    status: str = "succeeded",
    kind: str = "deploy",
    keep: int = 5,
) -> dict[str, Any]:
    """Record a deploy or rollback the way the playbook does: into the other slot."""
    current = state["current"]
    slot = other_slot(current["slot"] if current else None)
    from_sha = current["sha"] if current else None
    message = "" if status == "succeeded" else "health check failed"
    return record_release(state, entry(sha, status, kind, slot, message, from_sha), keep=keep)


def deploys(*shas: str, keep: int = 5) -> dict[str, Any]:
    state = release_state(None)
    for sha in shas:
        state = step(state, sha, keep=keep)
    return state


def rollback(state: dict[str, Any], prefix: str | None = None, keep: int = 5) -> dict[str, Any]:
    target = resolve_release(state, prefix, keep=keep)
    return step(state, target["sha"], kind="rollback", keep=keep)


def current_sha(state: dict[str, Any]) -> str | None:
    return None if state["current"] is None else str(state["current"]["sha"])


# --------------------------------------------------------------------------- slots


@pytest.mark.parametrize(
    ("slot", "other"), [("blue", "green"), ("green", "blue"), (None, "blue"), ("", "blue")]
)
def test_other_slot(slot: str | None, other: str) -> None:
    assert other_slot(slot) == other


@pytest.mark.parametrize("slot", ["red", "Blue", "blue "])
def test_other_slot_refuses(slot: str) -> None:
    with pytest.raises(AnsibleFilterError, match="must be 'blue' or 'green'"):
        other_slot(slot)


# --------------------------------------------------------------------------- release_state


EMPTY: dict[str, Any] = {"version": 1, "current": None, "history": []}


@pytest.mark.parametrize("raw", [None, "", "  \n", {}, b"", "{}"])
def test_release_state_empty(raw: object) -> None:
    assert release_state(raw) == EMPTY


def test_release_state_parses_and_fills_missing_keys() -> None:
    raw = json.dumps(
        {
            "current": {"sha": A, "slot": "green", "image": f"{REPO}:{A}"},
            "history": [
                {
                    "sha": A,
                    "image": f"{REPO}:{A}",
                    "slot": "green",
                    "kind": "deploy",
                    "status": "succeeded",
                    "duration_s": 12,
                },
                {
                    "sha": B,
                    "image": f"{REPO}:{B}",
                    "kind": "deploy",
                    "status": "failed",
                    "message": "pull failed",
                    "from_sha": "",
                },
            ],
        }
    )
    state = release_state(raw)
    assert state["version"] == 1
    assert state["current"] == {
        "sha": A,
        "slot": "green",
        "image": f"{REPO}:{A}",
        "at": "",
        "by": "",
    }
    first, second = state["history"]
    assert first["message"] == "" and first["from_sha"] is None and first["at"] == ""
    assert first["duration_s"] == 12  # unknown keys survive
    assert second["slot"] is None and second["from_sha"] is None
    assert release_state(state) == state  # idempotent


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        ({"version": 2}, "version 2 is not supported"),
        ({"version": True}, "version True is not supported"),
        ({"history": {}}, "history must be a list"),
        ({"history": "x"}, "history must be a list"),
        ({"current": "abc1234"}, "current must be a mapping"),
        ({"current": {"sha": "XYZ", "slot": "blue", "image": "r:x"}}, "current.sha 'XYZ'"),
        ({"current": {"sha": A, "slot": "red", "image": "r:x"}}, "current.slot 'red'"),
        ({"current": {"sha": A, "slot": "blue"}}, "current.image is missing"),
        ({"history": [5]}, "history[0] must be a mapping"),
        ({"history": [{**entry(A), "status": "ok"}]}, "history[0].status 'ok'"),
        ({"history": [entry(A), {**entry(B), "kind": "redeploy"}]}, "history[1].kind"),
        ({"history": [{**entry(A), "slot": None}]}, "history[0].slot None"),
        ({"history": [{**entry(A), "at": 5}]}, "history[0].at must be a string"),
        ({"history": [{**entry(A), "from_sha": "nope"}]}, "history[0].from_sha 'nope'"),
    ],
)
def test_release_state_corrupt(raw: object, detail: str) -> None:
    with pytest.raises(AnsibleFilterError) as info:
        release_state(raw)
    message = str(info.value)
    assert message.startswith("release state is corrupt: ")
    assert detail in message
    assert "\n" not in message


# --------------------------------------------------------------------------- record / retained


def test_record_succeeded_sets_current_and_failed_does_not() -> None:
    state = deploys(A)
    assert state["current"]["sha"] == A
    assert state["current"]["slot"] == "blue"
    failed = step(state, B, status="failed")
    assert failed["current"] == state["current"]
    assert failed["history"][0]["status"] == "failed"
    assert failed["history"][0]["sha"] == B
    assert [item["sha"] for item in retained_releases(failed)] == [A]
    assert previous_release(failed) is None


def test_record_refuses_invalid_entry() -> None:
    with pytest.raises(AnsibleFilterError, match=r"release entry is invalid: entry.sha 'XYZ'"):
        record_release(EMPTY, {**entry(A), "sha": "XYZ"})
    with pytest.raises(AnsibleFilterError, match="keep 0 is invalid"):
        record_release(EMPTY, entry(A), keep=0)


def test_record_keep_accepts_digit_string() -> None:
    assert record_release(EMPTY, entry(A), keep="3")["current"]["sha"] == A  # type: ignore[arg-type]


def test_history_trim_rule() -> None:
    # newest first: A (ok), x failed, B ok, C ok, B ok again, D ok
    state = deploys(D, B, C, B, keep=10)
    state = step(state, E, status="failed", keep=10)
    state = step(state, A, keep=10)
    assert [e["sha"] for e in state["history"]] == [A, E, B, C, B, D]
    trimmed = record_release(state, entry(F), keep=3)  # F, A, E(failed), B, C(4th: cut)
    assert [e["sha"] for e in trimmed["history"]] == [F, A, E, B]


def test_history_length_cap() -> None:
    state = deploys(A, keep=2)
    for _ in range(30):
        state = step(state, B, status="failed", keep=2)
    assert len(state["history"]) == 20  # max(2 * 4, 20)
    assert state["current"]["sha"] == A
    assert [item["sha"] for item in retained_releases(state, keep=2)] == [A]


def test_retained_releases_items() -> None:
    state = deploys(A, B, C)
    retained = retained_releases(state)
    assert [item["sha"] for item in retained] == [C, B, A]
    assert retained[0] == {
        "sha": C,
        "image": f"{REPO}:{C}",
        "slot": "blue",
        "at": state["current"]["at"],
        "by": "alice@ctl",
    }
    assert [item["slot"] for item in retained] == ["blue", "green", "blue"]
    assert retained_releases(state, keep=2) == retained[:2]
    assert retained_releases(EMPTY) == []


# --------------------------------------------------------------------------- rollbacks


def test_rollback_of_a_rollback_toggles() -> None:
    state = deploys(A, B)
    assert previous_release(state)["sha"] == A  # type: ignore[index]
    state = rollback(state)
    assert current_sha(state) == A
    assert state["history"][0]["kind"] == "rollback"
    assert state["history"][0]["from_sha"] == B
    assert previous_release(state)["sha"] == B  # type: ignore[index]
    state = rollback(state)
    assert current_sha(state) == B
    assert previous_release(state)["sha"] == A  # type: ignore[index]


def test_deploy_three_then_rollback_chain() -> None:
    state = deploys(A, B, C)
    assert current_sha(state) == C
    state = rollback(state)  # to B
    assert current_sha(state) == B
    state = rollback(state)  # back to C
    assert current_sha(state) == C
    state = rollback(state, A[:8])  # explicitly to A
    assert current_sha(state) == A
    assert [item["sha"] for item in retained_releases(state)] == [A, C, B]
    state = rollback(state)  # to C, which served before A
    assert current_sha(state) == C
    state = step(state, D)  # a new deploy after rollbacks
    assert [item["sha"] for item in retained_releases(state)] == [D, C, A, B]
    assert previous_release(state)["sha"] == C  # type: ignore[index]
    slots = [e["slot"] for e in state["history"]]
    assert all(x != y for x, y in itertools.pairwise(slots))  # always into the other slot


def test_failed_deploy_does_not_change_previous() -> None:
    state = deploys(A, B)
    state = step(state, C, status="failed")
    assert current_sha(state) == B
    assert previous_release(state)["sha"] == A  # type: ignore[index]
    assert [item["sha"] for item in retained_releases(state)] == [B, A]
    with pytest.raises(AnsibleFilterError, match="matches no retained release"):
        resolve_release(state, C)


def test_resolve_release_messages() -> None:
    with pytest.raises(AnsibleFilterError) as info:
        resolve_release(EMPTY, None)
    assert str(info.value) == "no previous release to roll back to; retained releases: none"

    state = deploys(A)
    with pytest.raises(AnsibleFilterError) as info:
        resolve_release(state, "")
    assert str(info.value) == (
        "no previous release to roll back to; retained releases: "
        f"{A} ({state['current']['at']}, alice@ctl) (current)"
    )

    state = deploys(A, B)
    with pytest.raises(AnsibleFilterError) as info:
        resolve_release(state, "fffffff")
    at_a, at_b = state["history"][1]["at"], state["history"][0]["at"]
    assert str(info.value) == (
        "sha 'fffffff' matches no retained release; retained releases: "
        f"{B} ({at_b}, alice@ctl) (current), {A} ({at_a}, alice@ctl)"
    )
    with pytest.raises(AnsibleFilterError, match=r"^sha 'ABCDEF0' is invalid"):
        resolve_release(state, "ABCDEF0")
    with pytest.raises(AnsibleFilterError, match=r"^sha 'abc' is invalid"):
        resolve_release(state, "abc")


def test_resolve_release_ambiguous_and_exact() -> None:
    x = "abcdef1" + "0" * 33
    y = "abcdef1" + "1" * 33
    state = release_state(None)
    for sha in (x, y):
        state = step(state, sha)
    with pytest.raises(AnsibleFilterError) as info:
        resolve_release(state, "abcdef1")
    assert (
        str(info.value) == f"sha 'abcdef1' is ambiguous: it matches {y}, {x}; give more characters"
    )
    assert resolve_release(state, x[:8])["sha"] == x
    assert resolve_release(state, y)["sha"] == y  # the current one is returned as well

    short = step(step(release_state(None), "abcdef1"), "abcdef12")
    assert resolve_release(short, "abcdef1")["sha"] == "abcdef1"  # an exact sha wins


def test_resolve_release_respects_keep() -> None:
    state = deploys(A, B, C, keep=5)
    assert resolve_release(state, A[:8], keep=3)["sha"] == A
    with pytest.raises(AnsibleFilterError, match="matches no retained release"):
        resolve_release(state, A[:8], keep=2)
    with pytest.raises(AnsibleFilterError, match="no previous release"):
        resolve_release(state, None, keep=1)


# --------------------------------------------------------------------------- prune


def test_prune_after_seven_deploys_keep_five() -> None:
    shas = [A, B, C, D, E, F, G]
    images = [f"{REPO}:{sha}" for sha in shas]

    # history mode: on a history not yet trimmed to keep
    untrimmed = deploys(*shas, keep=10)
    assert images_to_prune(untrimmed, keep=5) == images[:2]
    assert images_to_prune(untrimmed, keep=5, image_repo=REPO) == images[:2]
    assert images_to_prune(untrimmed, keep=5, image_repo="other.test/app") == []

    # host mode: the history is trimmed, the host still has all seven images
    state = deploys(*shas, keep=5)
    assert len(state["history"]) == 5
    assert images_to_prune(state, keep=5) == []  # trimmed history no longer names them
    present = [
        *reversed(images),
        f"{REPO}:<none>",
        "registry.test:5000/melk-ai-other:abc1234",
        "busybox:latest",
        images[0],
    ]
    assert images_to_prune(state, keep=5, image_repo=REPO, present=present) == [
        images[1],
        images[0],
    ]
    assert images_to_prune(state, 5, REPO, "\n".join(images)) == images[:2]


def test_prune_includes_failed_never_current() -> None:
    state = deploys(A, B, keep=10)
    state = step(state, C, status="failed", keep=10)
    assert images_to_prune(state, keep=1) == [f"{REPO}:{A}", f"{REPO}:{C}"]
    assert images_to_prune(state, keep=2) == [f"{REPO}:{C}"]
    present = [f"{REPO}:{sha}" for sha in (A, B, C)]
    assert images_to_prune(state, keep=1, image_repo=REPO, present=present) == [
        f"{REPO}:{A}",
        f"{REPO}:{C}",
    ]


def test_at_start_only_images_that_neither_outcome_retains_are_pruned() -> None:
    """Five releases A..E retained (keep 5), F starting: a success would drop A, a
    failure keeps it (F is not retained then): A stays until the next run. An image
    no history names (Z) and one the history already dropped go at once."""
    state = deploys(A, B, C, D, E, keep=5)
    z = full_sha(0xEE)
    present = [f"{REPO}:{sha}" for sha in (A, B, C, D, E, F, z)]
    new = entry(F, slot=other_slot(state["current"]["slot"]))
    assert release_history.images_to_prune_at_start(state, new, 5, REPO, present) == [f"{REPO}:{z}"]
    # what the success then leaves for the next run: A
    after = record_release(state, new, 5)
    assert images_to_prune(after, 5, REPO, present) == [f"{REPO}:{A}", f"{REPO}:{z}"]
    # keep 1: a success keeps F only, a failure E only; A..D go now, E and F stay
    assert release_history.images_to_prune_at_start(state, new, 1, REPO, present) == [
        f"{REPO}:{sha}" for sha in (A, B, C, D, z)
    ]


@given(st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=6))
def test_at_start_a_pruned_image_is_one_both_outcomes_drop(keep: int, count: int) -> None:
    shas = [full_sha(0xB0 + n) for n in range(count)]
    state = deploys(*shas, keep=keep) if shas else release_state(None)
    target = full_sha(0xC0)
    present = [f"{REPO}:{sha}" for sha in [*shas, target]]
    new = entry(target, slot=other_slot(state["current"]["slot"] if state["current"] else None))
    pruned = release_history.images_to_prune_at_start(state, new, keep, REPO, present)
    for status in ("succeeded", "failed"):
        kept = {
            item["image"]
            for item in retained_releases(
                record_release(state, {**new, "status": status}, keep), keep
            )
        }
        assert not kept & set(pruned), status
    assert f"{REPO}:{target}" not in pruned


def test_prune_host_mode_needs_repo() -> None:
    state = deploys(A)
    with pytest.raises(AnsibleFilterError, match="image_repo is required"):
        images_to_prune(state, present=["x:1"])
    with pytest.raises(AnsibleFilterError, match="image_repo 'melk-ai:v1' is invalid"):
        images_to_prune(state, image_repo="melk-ai:v1", present=[])


# --------------------------------------------------------------------------- history_lines


def test_history_lines() -> None:
    state = deploys(A)
    state = step(state, B, status="failed")
    lines = history_lines(state)
    at_a, at_b = state["history"][1]["at"], state["history"][0]["at"]
    assert lines == [
        f"{at_b}  deploy    {B[:12]}  failed     by alice@ctl: health check failed",
        f"{at_a}  deploy    {A[:12]}  succeeded  by alice@ctl",
    ]
    assert history_lines(state, limit=1) == lines[:1]
    assert history_lines(state, limit=0) == []
    assert history_lines(EMPTY) == []


def test_history_lines_flatten_long_messages() -> None:
    message = "line one\n  line two\t" + "x" * 500
    state = record_release(EMPTY, entry(A, status="failed", message=message))
    (line,) = history_lines(state)
    assert "\n" not in line
    assert line.endswith("...")
    assert "line one line two" in line


def test_filter_module_exposes_the_history_filters() -> None:
    filters = FilterModule().filters()
    assert set(filters) == {
        "other_slot",
        "slot_containers",
        "standby_release",
        "standby_ready",
        "reconcile_state",
        "record_release",
        "retained_releases",
        "previous_release",
        "resolve_release",
        "images_to_prune",
        "images_to_prune_at_start",
        "history_lines",
        "failed_hosts",
    }
    assert all(filters[name] is getattr(release_history, name) for name in filters)


# --------------------------------------------------------------------------- properties


POOL = [full_sha(n) for n in range(1, 9)]


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A run of (sha, status) outcomes over a small pool, so shas repeat."""
    return draw(
        st.lists(
            st.tuples(st.sampled_from(POOL), st.sampled_from(["succeeded", "succeeded", "failed"])),
            max_size=30,
        )
    )


def replay(
    ops: list[tuple[str, str]], keep: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    state = release_state(None)
    for sha, status in ops:
        before = state
        state = step(state, sha, status=status, keep=keep)
        yield before, state


@given(operations(), st.integers(min_value=1, max_value=6))
def test_record_invariants(ops: list[tuple[str, str]], keep: int) -> None:
    for before, after in replay(ops, keep):
        snapshot = copy.deepcopy(before)
        newest = after["history"][0]
        retained = retained_releases(after, keep=keep)
        shas = [item["sha"] for item in retained]
        if newest["status"] == "succeeded":
            assert after["current"]["sha"] == newest["sha"]
            assert shas[0] == newest["sha"]
        else:
            assert after["current"] == before["current"]
        assert len(shas) == len(set(shas)) <= keep
        succeeded = {e["sha"] for e in after["history"] if e["status"] == "succeeded"}
        assert len(succeeded) <= keep
        assert len(after["history"]) <= max(keep * 4, 20)
        assert release_state(after) == after
        # recording again from `before` gives the same result and leaves `before` untouched
        record_release(before, copy.deepcopy(newest), keep=keep)
        assert before == snapshot
        previous = previous_release(after)
        if previous is not None:
            assert previous["sha"] != current_sha(after)
            assert previous["sha"] in [item["sha"] for item in retained_releases(after)]


@given(operations(), st.integers(min_value=2, max_value=6))
def test_resolve_prefix_of_retained(ops: list[tuple[str, str]], keep: int) -> None:
    states = [after for _, after in replay(ops, keep)]
    state = states[-1] if states else release_state(None)
    retained = retained_releases(state, keep=keep)
    for item in retained:
        prefix = item["sha"][:8]
        if sum(other["sha"].startswith(prefix) for other in retained) == 1:
            assert resolve_release(state, prefix, keep=keep) == item
    previous = previous_release(state)
    if previous is None:
        with pytest.raises(AnsibleFilterError, match="no previous release"):
            resolve_release(state, None, keep=keep)
    else:
        assert resolve_release(state, None, keep=keep) == previous


# --------------------------------------------------------------------------- proxy reconcile

FRONT = "172.18.0.1:18000"
SLOT_PORTS = {"blue": 18001, "green": 18002}
SHA_A = "a" * 40
SHA_B = "b" * 40


def state_serving(sha: str, slot: str) -> dict[str, object]:
    entry = {
        "sha": sha,
        "image": f"reg/app:{sha}",
        "slot": slot,
        "kind": "deploy",
        "status": "succeeded",
    }
    return release_history.record_release(None, entry)


def test_reconcile_keeps_a_state_that_agrees_with_the_proxy() -> None:
    state = state_serving(SHA_A, "blue")
    serving = serving_release(
        upstream_text("melk-ai", FRONT, "172.18.0.5:8000", SHA_A, "blue"), SLOT_PORTS
    )
    assert release_history.reconcile_state(state, serving, "reg/app") == state


@pytest.mark.parametrize(
    "serving",
    [None, {"sha": None, "slot": "green", "port": 18002}, {"sha": SHA_B, "slot": None, "port": 1}],
)
def test_reconcile_trusts_the_history_when_the_proxy_names_no_release(
    serving: dict[str, object] | None,
) -> None:
    state = state_serving(SHA_A, "blue")
    assert release_history.reconcile_state(state, serving, "reg/app") == state


def test_reconcile_follows_the_proxy_after_a_run_killed_after_its_switch() -> None:
    state = state_serving(SHA_A, "blue")
    serving = serving_release(
        upstream_text("melk-ai", FRONT, "172.18.0.6:8000", SHA_B, "green"), SLOT_PORTS
    )
    fixed = release_history.reconcile_state(state, serving, "reg/app")
    assert fixed["current"] == {
        "sha": SHA_B,
        "slot": "green",
        "image": f"reg/app:{SHA_B}",
        "at": "",
        "by": "",
        "reconciled": True,
    }
    assert fixed["history"] == state["history"]
    assert release_history.other_slot(fixed["current"]["slot"]) == "blue"
    # the history still offers the release before as the one to roll back to
    assert release_history.previous_release(fixed)["sha"] == SHA_A
    assert state["current"]["sha"] == SHA_A  # the input is not changed


def test_reconcile_on_a_host_with_no_history() -> None:
    serving = {"sha": SHA_B, "slot": "green", "port": 18002}
    fixed = release_history.reconcile_state(None, serving, "reg/app")
    assert fixed["current"]["slot"] == "green"
    assert fixed["history"] == []


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ({"a": "succeeded", "b": "failed", "c": None}, ["b"]),
        ({"a": "succeeded", "b": "noop"}, []),
        ({"a": "failed", "b": "failed"}, ["a", "b"]),
        ({}, []),
    ],
)
def test_failed_hosts_are_those_of_the_play_whose_run_failed(
    outcomes: dict[str, str | None], expected: list[str]
) -> None:
    hostvars: dict[str, dict[str, Any]] = {
        host: ({"app_deploy_run_outcome": outcome} if outcome else {})
        for host, outcome in outcomes.items()
    }
    hostvars["elsewhere"] = {"app_deploy_run_outcome": "failed"}  # not in this play
    hosts = [*outcomes, "not-in-hostvars"]
    assert release_history.failed_hosts(hostvars, hosts) == expected


# --------------------------------------------------------------------------- defaults and options


def test_history_length_cap_grows_with_keep() -> None:
    state = deploys(A, keep=6)
    for _ in range(30):
        state = step(state, B, status="failed", keep=6)
    assert len(state["history"]) == 24  # max(6 * 4, 20)


def test_five_releases_are_kept_by_default() -> None:
    state = release_state(None)
    for sha in (A, B, C, D, E):
        state = record_release(state, entry(sha), keep=10)
    assert {e["sha"] for e in record_release(state, entry(F))["history"]} == {F, E, D, C, B}
    state = record_release(state, entry(F), keep=10)
    assert [item["sha"] for item in retained_releases(state)] == [F, E, D, C, B]
    assert resolve_release(state, B[:8])["sha"] == B
    with pytest.raises(AnsibleFilterError, match=f"^sha '{A[:8]}' matches no retained release"):
        resolve_release(state, A[:8])
    # with the default keep, A's image is no longer retained; F..B's are
    assert images_to_prune(state, image_repo=REPO, present=[f"{REPO}:{s}" for s in (A, B, F)]) == [
        f"{REPO}:{A}"
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s: retained_releases(s, keep="x"),
            "keep 'x' is invalid: it must be a whole number",
        ),
        (lambda s: resolve_release(s, None, keep=0), "keep 0 is invalid: it must be at least 1"),
        (
            lambda s: images_to_prune(s, keep=[]),
            "keep (a list) is invalid: it must be a whole number",
        ),
        (lambda s: record_release(s, entry(B), keep="2x"), "keep '2x' is invalid"),
        (lambda s: history_lines(s, limit=-1), "limit -1 is invalid: it must be at least 0"),
        (lambda s: history_lines(s, limit="n"), "limit 'n' is invalid: it must be a whole number"),
    ],
)
def test_options_are_named_in_their_messages(call: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        call(deploys(A))
    assert str(caught.value).startswith(message)


def test_history_lines_shows_ten_by_default_and_question_marks_for_unknowns() -> None:
    state = release_state(None)
    for n in range(12):
        state = record_release(
            state,
            {
                "sha": full_sha(n),
                "image": "i",
                "slot": "blue",
                "kind": "deploy",
                "status": "succeeded",
            },
            keep=20,
        )
    lines = history_lines(state)
    assert len(lines) == 10
    assert lines[0] == f"{'?':<20}  deploy    {full_sha(11)[:12]}  succeeded  by ?"


def test_history_lines_shows_a_message_only_for_a_failure() -> None:
    state = record_release(None, entry(A, message="all fine"))
    assert history_lines(state) == [
        f"{state['history'][0]['at']}  deploy    {A[:12]}  succeeded  by alice@ctl"
    ]


def test_listing_shows_only_the_sha_when_time_and_user_are_unknown() -> None:
    state = record_release(
        None, {"sha": A, "image": "i", "slot": "blue", "kind": "deploy", "status": "succeeded"}
    )
    with pytest.raises(AnsibleFilterError) as caught:
        resolve_release(state, "fffffff")
    assert str(caught.value) == (
        f"sha 'fffffff' matches no retained release; retained releases: {A} (current)"
    )


def test_other_slot_message() -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        other_slot("red")
    assert str(caught.value) == "slot 'red' is invalid: it must be 'blue' or 'green'"


# --------------------------------------------------------------------------- pruning edges


def test_prune_skips_other_repositories_and_keeps_going() -> None:
    state = deploys(A)
    present = ["other/app:1", f"{REPO}:old", f"{REPO}-x:1", REPO + ":", f"{REPO}:<none>"]
    assert images_to_prune(state, image_repo=REPO, present=present) == [f"{REPO}:old"]


def test_prune_with_an_empty_repo_is_history_mode_over_every_repo() -> None:
    state = deploys(A, B, C, keep=5)
    assert images_to_prune(state, keep=1, image_repo="") == [f"{REPO}:{A}", f"{REPO}:{B}"]


@pytest.mark.parametrize(
    ("present", "message"),
    [
        (5, "present must be a list of image references, not an integer"),
        (b"reg/app:1", "present must be a list of image references, not a list"),
    ],
)
def test_prune_refuses_present_that_is_not_a_list(present: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        images_to_prune(deploys(A), image_repo=REPO, present=present)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_prune_host_mode_message() -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        images_to_prune(deploys(A), present=[])
    assert str(caught.value) == (
        "image_repo is required when present is given, so that only this app's images are pruned"
    )


# --------------------------------------------------------------------------- state fields


def test_a_timestamp_parsed_by_yaml_is_written_back_in_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # the controller's own zone plays no part
    time.tzset()
    try:
        tz = datetime.timezone(datetime.timedelta(hours=2))
        raw = dict(entry(A), at=datetime.datetime(2026, 11, 27, 6, 5, 4, tzinfo=tz))
        assert record_release(None, raw)["history"][0]["at"] == "2026-11-27T04:05:04Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_missing_optional_fields_are_filled_with_empty_text() -> None:
    raw = {"sha": A, "image": "i", "slot": "blue", "kind": "deploy", "status": "succeeded"}
    state = record_release({"current": {"sha": B, "slot": "green", "image": "j"}}, raw)
    recorded = state["history"][0]
    assert (recorded["at"], recorded["by"], recorded["message"], recorded["from_sha"]) == (
        "",
        "",
        "",
        None,
    )
    assert release_state({"current": {"sha": B, "slot": "green", "image": "j"}})["current"] == {
        "sha": B,
        "slot": "green",
        "image": "j",
        "at": "",
        "by": "",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": ""}, "entry.image is missing"),
        ({"image": 5}, "entry.image must be a string, not an integer"),
        ({"by": ["x"]}, "entry.by must be a string, not a list"),
        ({"message": 1.5}, "entry.message must be a string, not a number"),
        ({"status": None}, "entry.status None is invalid: it must be 'succeeded' or 'failed'"),
        ({"kind": None}, "entry.kind None is invalid: it must be 'deploy' or 'rollback'"),
        ({"kind": "x"}, "entry.kind 'x' is invalid: it must be 'deploy' or 'rollback'"),
        ({"sha": None}, "entry.sha None is invalid: it must be 7 to 40 lowercase hex"),
        ({"status": "failed", "slot": "red"}, "entry.slot 'red' is invalid: it must be 'blue' or"),
    ],
)
def test_invalid_entry_messages(change: dict[str, object], message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        record_release(None, dict(entry(A), **change))
    assert str(caught.value).startswith(f"release entry is invalid: {message}")


def test_a_failed_entry_may_have_no_slot() -> None:
    state = record_release(None, dict(entry(A, status="failed"), slot=None))
    assert state["history"][0]["slot"] is None


HINT = "repair the state file or move it aside (its history is then lost)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], f"release state is corrupt: it must be a JSON object, not a list; {HINT}"),
        (
            {"history": 5},
            f"release state is corrupt: history must be a list, not an integer; {HINT}",
        ),
        (
            {"history": [5]},
            f"release state is corrupt: history[0] must be a mapping, not an integer; {HINT}",
        ),
        (
            {"current": 5},
            f"release state is corrupt: current must be a mapping or null, not an integer; {HINT}",
        ),
        (
            {"current": {"slot": "blue", "image": "i"}},
            "release state is corrupt: current.sha None is invalid",
        ),
        (
            {"current": {"sha": A, "image": "i"}},
            "release state is corrupt: current.slot None is invalid",
        ),
        (
            {"current": {"sha": A, "slot": "blue"}},
            "release state is corrupt: current.image is missing",
        ),
        (
            {"current": {"sha": A, "slot": "blue", "image": "i", "at": 1}},
            "release state is corrupt: current.at must be a string",
        ),
        (
            {"current": {"sha": A, "slot": "blue", "image": "i", "by": 1}},
            "release state is corrupt: current.by must be a string",
        ),
    ],
)
def test_corrupt_state_messages(raw: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        release_state(raw)
    assert str(caught.value).startswith(message)


def test_the_version_is_written_back_as_the_integer() -> None:
    state = release_state('{"version": 1.0}')
    assert state["version"] == 1
    assert isinstance(state["version"], int)


def test_unknown_fields_are_copied_not_shared() -> None:
    raw = {"history": [dict(entry(A), extra={"tags": ["x"]})], "meta": {"tags": ["y"]}}
    state = release_state(raw)
    state["history"][0]["extra"]["tags"].append("changed")
    state["meta"]["tags"].append("changed")
    assert raw["history"][0]["extra"] == {"tags": ["x"]}  # type: ignore[index]
    assert raw["meta"] == {"tags": ["y"]}


# --------------------------------------------------------------------------- the standby


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", {}),
        (None, {}),
        ("not a line\n", {}),
        (
            f"blue true 0 {SHA_A}\ngreen false 3 {SHA_B}\n",
            {
                "blue": {"running": True, "restarts": 0, "sha": SHA_A, "ip": "", "health": None},
                "green": {"running": False, "restarts": 3, "sha": SHA_B, "ip": "", "health": None},
            },
        ),
        (
            f"blue true 0 {SHA_A} 172.17.0.3\ngreen false 1 {SHA_B} \n",
            {
                "blue": {
                    "running": True,
                    "restarts": 0,
                    "sha": SHA_A,
                    "ip": "172.17.0.3",
                    "health": None,
                },
                "green": {"running": False, "restarts": 1, "sha": SHA_B, "ip": "", "health": None},
            },
        ),
        # deploy_lock's probe status after the address (an empty one when there is none)
        (
            f"blue true 0 {SHA_A} 172.17.0.3 200\ngreen false 1 {SHA_B}  -1\n",
            {
                "blue": {
                    "running": True,
                    "restarts": 0,
                    "sha": SHA_A,
                    "ip": "172.17.0.3",
                    "health": 200,
                },
                "green": {"running": False, "restarts": 1, "sha": SHA_B, "ip": "", "health": -1},
            },
        ),
        (f"blue true 0 {SHA_A} 172.17.0.3 1000", {}),
        (f"blue true 0 {SHA_A} 172.17.0.3 ok", {}),
        (f"blue true 0 {SHA_A} not-an-address", {}),
        (
            f"  green true 12 {SHA_B}  ",
            {"green": {"running": True, "restarts": 12, "sha": SHA_B, "ip": "", "health": None}},
        ),
        # not ours: no labels (docker prints <no value>), another slot, a sha that is not one
        ("<no value> true 0 <no value>", {}),
        (f"red true 0 {SHA_A}", {}),
        ("blue true 0 latest", {}),
        (f"blue yes 0 {SHA_A}", {}),
        # docker_host_info's shape: labels and state at the top, no restart count
        (
            [{"Labels": {"io.melk.slot": "green", "io.melk.sha": SHA_B}, "State": "running"}],
            {"green": {"running": True, "restarts": 0, "sha": SHA_B, "ip": "", "health": None}},
        ),
        (
            [{"Labels": {"io.melk.slot": "green", "io.melk.sha": SHA_B}, "State": "exited"}],
            {"green": {"running": False, "restarts": 0, "sha": SHA_B, "ip": "", "health": None}},
        ),
        ([{"Labels": None, "State": "running"}], {}),
        ([{"Labels": {"io.melk.slot": "red", "io.melk.sha": SHA_A}, "State": "running"}], {}),
        (["x", 3], {}),
        ({"blue": 1}, {}),
    ],
)
def test_slot_containers(given: object, expected: dict[str, Any]) -> None:
    assert release_history.slot_containers(given) == expected


def test_slot_containers_reads_the_lines_deploy_lock_probed() -> None:
    lines = f"blue true 0 {SHA_A} 172.17.0.3\ngreen false 2 {SHA_B} \n"
    probed = deploy_lock.with_health(lines, lambda address: 204)
    assert release_history.slot_containers(probed) == {
        "blue": {"running": True, "restarts": 0, "sha": SHA_A, "ip": "172.17.0.3", "health": 204},
        "green": {"running": False, "restarts": 2, "sha": SHA_B, "ip": "", "health": -1},
    }


SLOTS_AB = {
    "blue": {"running": True, "restarts": 0, "sha": SHA_A, "health": 200},
    "green": {"running": True, "restarts": 0, "sha": SHA_B, "health": 200},
}


@pytest.mark.parametrize(
    ("slots", "current", "expected"),
    [
        (SLOTS_AB, "blue", {"slot": "green", "sha": SHA_B, "restarts": 0}),
        (SLOTS_AB, "green", {"slot": "blue", "sha": SHA_A, "restarts": 0}),
        ({"blue": SLOTS_AB["blue"]}, "blue", None),  # nothing in the other slot
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "running": False}}, "blue", None),
        (SLOTS_AB, None, None),  # nothing serves: no standby either
        (SLOTS_AB, "red", None),
        ("x", "blue", None),
    ],
)
def test_standby_release(slots: object, current: object, expected: dict[str, Any] | None) -> None:
    assert release_history.standby_release(slots, current) == expected


@pytest.mark.parametrize(
    ("slots", "sha", "ready"),
    [
        (SLOTS_AB, SHA_B, True),
        (SLOTS_AB, SHA_A, False),  # that one serves; the standby is another release
        (SLOTS_AB, "c" * 40, False),  # an older retained release: the full path
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "restarts": 1}}, SHA_B, False),
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "running": False}}, SHA_B, False),
        ({"blue": SLOTS_AB["blue"]}, SHA_B, False),
        # its probe under the lock: no answer, an error, a redirect, or none sent
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "health": -1}}, SHA_B, False),
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "health": 503}}, SHA_B, False),
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "health": 302}}, SHA_B, False),
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "health": None}}, SHA_B, False),
        ({**SLOTS_AB, "green": {**SLOTS_AB["green"], "health": 204}}, SHA_B, True),
    ],
)
def test_standby_ready_only_for_the_running_never_restarted_standby(
    slots: object, sha: str, ready: bool
) -> None:
    assert release_history.standby_ready(slots, "blue", sha) is ready
