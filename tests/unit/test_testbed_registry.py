"""The test bed's registry ports: the registries `make test` runs side by side never
share a port, whatever the checkout's path."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from testbed import ROOT
from testbed.registry import (
    AUTH_SUFFIX,
    BLOCK,
    BLOCKS,
    FIRST_PORT,
    SUITE_REGISTRIES,
    checkout_block,
    default_port,
)

NAMES = [*SUITE_REGISTRIES, *(n + AUTH_SUFFIX for n in SUITE_REGISTRIES)]
paths = st.text(min_size=1, max_size=60)


def test_the_checkout_whose_lanes_collided_now_gives_each_its_own_port() -> None:
    # Ports hashed from each name gave both of these 5260 in a CI clone at this path.
    state_dir = "/work/ci-clone30/.testbed"
    assert default_port("registry-extra", state_dir) != default_port("registry-faults", state_dir)


@given(paths)
def test_the_suites_registries_and_their_twins_have_distinct_ports_in_the_block(
    state_dir: str,
) -> None:
    ports = [default_port(name, state_dir) for name in NAMES]
    base = checkout_block(state_dir)
    assert len(set(ports)) == len(NAMES)
    assert all(base <= p < base + BLOCK for p in ports)
    assert base >= FIRST_PORT and base + BLOCK <= FIRST_PORT + BLOCK * BLOCKS


@given(paths, st.text(min_size=1, max_size=30).filter(lambda n: n not in NAMES))
def test_another_name_gets_a_port_outside_the_checkouts_block(state_dir: str, name: str) -> None:
    port = default_port(name, state_dir)
    base = checkout_block(state_dir)
    assert FIRST_PORT <= port < FIRST_PORT + BLOCK * BLOCKS
    assert not base <= port < base + BLOCK
    assert port == default_port(name, state_dir)  # the same in every process


def test_every_registry_the_makefile_names_has_a_slot() -> None:
    named = set(
        re.findall(
            r"MELK_REGISTRY_NAME=(?:\$\$\{MELK_REGISTRY_NAME:-)?([a-z-]+)",
            (ROOT / "Makefile").read_text(),
        )
    )
    assert named, "the Makefile's lanes name their registries"
    assert named <= set(SUITE_REGISTRIES)
