"""`interfaces` specs → IP (docs/behaviour.md §8.7): the reference table, every error, the
address order, and the real machine's addresses read over netlink (in a
network namespace of our own for secondary and down-interface addresses)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from pilot.interfaces import (
    FamilySpec,
    IndexSpec,
    InterfaceError,
    NetworkSpec,
    StaticSpec,
    machine_addresses,
    parse_specs,
    resolve,
)
from pilot.errors import PilotError
from tests.support import DEADLINE

REFERENCE = [
    ("eth0", "10.2.0.1"),
    ("eth0", "192.168.1.100"),
    ("eth1", "10.0.0.100"),
    ("eth1", "10.0.0.200"),
    ("eth2", "10.1.0.200"),
    ("eth2", "fdc6:238c:c4bc::1"),
    ("lo", "::1"),
    ("lo", "127.0.0.1"),
]

REFERENCE_TABLE = [
    (["lo"], "127.0.0.1"),
    (["lo:inet6"], "::1"),
    (["eth0"], "10.2.0.1"),
    (["eth0:inet"], "10.2.0.1"),
    (["eth0[1]"], "192.168.1.100"),
    (["10.0.0.0/16"], "10.0.0.100"),
    (["10.1.0.0/16"], "10.1.0.200"),
    (["10.0.0.0/8"], "10.2.0.1"),
    (["eth2:inet6"], "fdc6:238c:c4bc::1"),
    (["inet6"], "fdc6:238c:c4bc::1"),
    (["inet"], "10.2.0.1"),
    (["static:192.168.1.100"], "192.168.1.100"),
    (["eth3", "fdc6:238c:c4bc::/48", "inet", "inet6"], "fdc6:238c:c4bc::1"),
    (["eth3", "10.0.0.0/16", "inet", "inet6", "fdc6:238c:c4bc::/48"], "10.0.0.100"),
]

NO_MATCH = "none of the interface specifications were able to match"


@pytest.mark.parametrize("specs, expected", REFERENCE_TABLE, ids=lambda v: repr(v))
def test_reference_table(specs, expected):
    """Each reference example of §8.7 resolves to the documented IP."""
    assert resolve(specs, addresses=REFERENCE) == expected


@pytest.mark.parametrize("specs", [["eth0:inet6"], ["eth0[2]"], ["eth3"], ["192.0.2.0/24"]])
def test_reference_no_match(specs):
    """Specs that fit no reference address fail with the no-match message."""
    with pytest.raises(InterfaceError, match=f"^{NO_MATCH}"):
        resolve(specs, addresses=REFERENCE)


@pytest.mark.parametrize("spec", ["inet", "inet6"])
def test_wildcards_skip_loopback(spec):
    """`inet` / `inet6` never pick a loopback address, even if it is all there is."""
    with pytest.raises(InterfaceError, match=f"^{NO_MATCH}"):
        resolve(spec, addresses=[("lo", "127.0.0.1"), ("lo", "::1"), ("lo", "127.0.0.2")])


def test_inet6_takes_link_local():
    """`inet6` accepts a link-local address (only loopback is excluded)."""
    assert resolve("inet6", addresses=[("eth0", "fe80::1"), ("lo", "::1")]) == "fe80::1"


def test_cidr_includes_loopback_and_ignores_host_bits():
    """A CIDR matches loopback addresses, and host bits in it are ignored."""
    assert resolve("127.1.2.3/8", addresses=REFERENCE) == "127.0.0.1"
    assert resolve("::1/128", addresses=REFERENCE) == "::1"


def test_string_is_one_spec():
    """A bare string is one spec, not a sequence of characters."""
    assert resolve("eth0[1]", addresses=REFERENCE) == "192.168.1.100"


@pytest.mark.parametrize("specs", [None, [], ()])
def test_default_specs(specs):
    """No specs means `["eth0:inet", "inet"]`: eth0 first, else any IPv4."""
    assert resolve(specs, addresses=REFERENCE) == "10.2.0.1"
    without_eth0 = [pair for pair in REFERENCE if pair[0] != "eth0"]
    assert resolve(specs, addresses=without_eth0) == "10.0.0.100"


def test_specs_tried_in_order_before_static():
    """Specs are tried in list order: a matching spec before `static:` wins,
    and `static:` wins over every later spec."""
    assert resolve(["eth1", "static:1.2.3.4"], addresses=REFERENCE) == "10.0.0.100"
    assert resolve(["eth9", "static:1.2.3.4", "eth1"], addresses=REFERENCE) == "1.2.3.4"


def test_static_needs_no_addresses():
    """`static:` answers without any interface addresses at all."""
    assert resolve("static:fdc6::0001", addresses=[]) == "fdc6::1"


def test_static_ipv4_mapped_prints_dotted_quad():
    """An IPv4-mapped IPv6 static address prints as IPv4, as Go prints it."""
    assert resolve("static:::ffff:1.2.3.4", addresses=[]) == "1.2.3.4"


def test_order_by_name_bytewise_then_ip():
    """Addresses are ordered by interface name byte-wise (`eth10` < `eth2`),
    then by 16-byte IP (`::1` before `127.0.0.1`); the index counts within
    the interface in that order, whatever order the addresses come in."""
    shuffled = [
        ("eth2", "10.0.0.2"),
        ("lo", "127.0.0.1"),
        ("eth10", "10.0.0.10"),
        ("lo", "::1"),
        ("eth2", "fe80::2"),
        ("eth2", "10.0.0.1"),
    ]
    assert resolve("10.0.0.0/8", addresses=shuffled) == "10.0.0.10"
    assert resolve("lo[0]", addresses=shuffled) == "::1"
    assert resolve("lo[1]", addresses=shuffled) == "127.0.0.1"
    assert resolve("eth2[0]", addresses=shuffled) == "10.0.0.1"
    assert resolve("eth2[1]", addresses=shuffled) == "10.0.0.2"
    assert resolve("eth2[2]", addresses=shuffled) == "fe80::2"


def test_index_counts_ipv4_and_ipv6_together():
    """`NAME[i]` counts IPv4 and IPv6 addresses of the interface together."""
    assert resolve("eth2[1]", addresses=REFERENCE) == "fdc6:238c:c4bc::1"


def test_ipv6_printed_compressed():
    """IPv6 results are printed in canonical compressed form."""
    addresses = [("eth0", "FDC6:0:0:0:0:0:0:0001")]
    assert resolve("eth0:inet6", addresses=addresses) == "fdc6::1"


@pytest.mark.parametrize(
    "spec",
    ["", "!", "127.0.0.1", "eth0:inet5", "eth0[-1]", "interface-does-not-exist",
     "static:1234", "br-1234", "eth0.100", "eth0[1]:inet", "10.0.0.0/255.255.0.0",
     "eth0\n", "ｅth0"],
)
def test_unparsable_spec(spec):
    """Unparsable specs give `Unable to parse interface spec: <spec>` on one line."""
    with pytest.raises(InterfaceError) as caught:
        parse_specs([spec])
    message = str(caught.value)
    assert message.startswith("Unable to parse interface spec: ")
    assert "\n" not in message
    if spec.isprintable():
        assert message == f"Unable to parse interface spec: {spec}"


@pytest.mark.parametrize("spec", ["static:abcdef", "static:", "static:fe80::1%eth0", "static:1.2.3"])
def test_unparsable_static(spec):
    """A bad static IP keeps 3.8's wording (`static:` where the IP belongs)."""
    with pytest.raises(InterfaceError) as caught:
        parse_specs([spec])
    assert str(caught.value) == f"Unable to parse static ip static: in {spec}"


def test_every_invalid_spec_listed_on_one_line():
    """One invalid entry rejects the list; the error lists every invalid entry,
    joined with `; ` so it stays one line."""
    with pytest.raises(InterfaceError) as caught:
        resolve(["eth0", "!", "inet", "static:abcdef"], addresses=REFERENCE)
    assert str(caught.value) == (
        "Unable to parse interface spec: !; "
        "Unable to parse static ip static: in static:abcdef"
    )


def test_interface_error_is_a_pilot_error():
    """InterfaceError is both a ValueError and a PilotError (one-line user error)."""
    assert issubclass(InterfaceError, ValueError)
    assert issubclass(InterfaceError, PilotError)


def test_no_match_lists_specs_and_addresses_on_one_line():
    """The no-match error names every spec and every iface:ip pair, on one line."""
    with pytest.raises(InterfaceError) as caught:
        resolve(["eth3", "eth0:inet6"], addresses=REFERENCE)
    message = str(caught.value)
    assert message.startswith(NO_MATCH)
    assert "\n" not in message
    assert "[eth3 eth0:inet6]" in message
    assert "eth0:10.2.0.1 eth0:192.168.1.100" in message
    assert "lo:::1 lo:127.0.0.1" in message


def test_parse_forms():
    """Each spec form parses into what it means."""
    parsed = parse_specs(["inet", "inet6", "eth0", "eth0:inet6", "eth0[12]",
                          "10.1.2.3/16", "static:10.0.0.1"])
    assert [type(spec) for spec in parsed] == [
        FamilySpec, FamilySpec, FamilySpec, FamilySpec, IndexSpec, NetworkSpec, StaticSpec]
    assert (parsed[0].name, parsed[0].version) == (None, 4)
    assert (parsed[1].name, parsed[1].version) == (None, 6)
    assert (parsed[2].name, parsed[2].version) == ("eth0", 4)
    assert (parsed[3].name, parsed[3].version) == ("eth0", 6)
    assert (parsed[4].name, parsed[4].index) == ("eth0", 12)
    assert str(parsed[5].network) == "10.1.0.0/16"
    assert str(parsed[6].ip) == "10.0.0.1"


# --- the real machine ------------------------------------------------------------


def _ip_command_addresses(prefix=()):
    """(interface, ip) pairs as iproute2 reports them, for cross-checking."""
    out = subprocess.run([*prefix, "ip", "-j", "addr", "show"], check=True,
                         capture_output=True, text=True, timeout=DEADLINE).stdout
    return {(link["ifname"], info["local"])
            for link in json.loads(out) for info in link.get("addr_info", [])
            if "local" in info}


def test_machine_addresses_include_loopback():
    """machine_addresses() sees lo's 127.0.0.1, and `lo` resolves to it."""
    found = machine_addresses()
    assert ("lo", "127.0.0.1") in found
    assert resolve("lo") == "127.0.0.1"


def test_machine_addresses_agree_with_iproute2():
    """machine_addresses() reports exactly the addresses `ip addr` reports."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    assert set(machine_addresses()) == _ip_command_addresses()


def test_machine_addresses_are_in_spec_order():
    """machine_addresses() comes back already in §8.7's order."""
    found = machine_addresses()
    assert resolve_all_indexes(found) == found


def resolve_all_indexes(found):
    """Rebuild the list by asking `NAME[i]` for each interface until no match."""
    rebuilt = []
    for name in sorted({name for name, _ in found}, key=os.fsencode):
        index = 0
        while True:
            try:
                rebuilt.append((name, resolve(f"{name}[{index}]", addresses=found)))
            except InterfaceError:
                break
            index += 1
    return rebuilt


# --- a network namespace of our own ---------------------------------------------

NAMESPACE_SETUP = [
    "link set lo up",
    # Two veth pairs, left down: down interfaces must still be listed.
    "link add eth0 type veth peer name eth1",
    "link add eth10 type veth peer name eth2",
    "addr add 10.2.0.1/24 dev eth0",
    "addr add 10.2.0.7/24 dev eth0 label eth0:1",  # secondary, with a label
    "addr add fdc6:238c:c4bc::1/64 dev eth0 nodad",
    "addr add 10.10.0.1/24 dev eth10",
    "addr add 10.20.0.1/24 dev eth2",
    "addr add 10.5.0.1 peer 10.5.0.2/32 dev eth1",  # point-to-point: local, not peer
]

NAMESPACE_SPECS = ["eth0", "eth0[1]", "eth0[2]", "eth0:inet6", "inet", "inet6",
                   "10.0.0.0/8", "eth1", "eth2", "lo", "eth0:inet5"]

NAMESPACE_PROBE = """
import json, sys
from pilot.interfaces import InterfaceError, machine_addresses, resolve
results = {}
for spec in json.loads(sys.argv[1]):
    try:
        results[spec] = resolve(spec)
    except InterfaceError as error:
        results[spec] = "error: " + str(error)
print(json.dumps({"addresses": machine_addresses(), "resolved": results}))
"""


def _run(*args):
    """Run a command; its failure message becomes a readable string."""
    return subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def namespace():
    """A fresh network namespace with known interfaces; always deleted."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    name = f"pilot-if-test-{os.getpid()}"
    created = _run("ip", "netns", "add", name)
    if created.returncode != 0:
        pytest.skip(f"`ip netns add` is unavailable here: {created.stderr.strip()}")
    try:
        for command in NAMESPACE_SETUP:
            done = _run("ip", "-n", name, *command.split())
            assert done.returncode == 0, f"ip {command}: {done.stderr.strip()}"
        yield name
    finally:
        _run("ip", "netns", "delete", name)


@pytest.fixture(scope="module")
def probe(namespace):
    """What Pilot sees from inside the namespace (one interpreter start)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", NAMESPACE_PROBE,
         json.dumps(NAMESPACE_SPECS)],
        capture_output=True, text=True, timeout=DEADLINE, env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    result["addresses"] = [tuple(pair) for pair in result["addresses"]]
    return result


def test_namespace_lists_every_address_in_order(probe):
    """Inside the namespace: down interfaces, the secondary IPv4, the IPv6 and
    the point-to-point local address are all listed, in §8.7's order."""
    assert probe["addresses"] == [
        ("eth0", "10.2.0.1"),
        ("eth0", "10.2.0.7"),
        ("eth0", "fdc6:238c:c4bc::1"),
        ("eth1", "10.5.0.1"),
        ("eth10", "10.10.0.1"),
        ("eth2", "10.20.0.1"),
        ("lo", "::1"),
        ("lo", "127.0.0.1"),
    ]


def test_namespace_agrees_with_iproute2(namespace, probe):
    """The namespace's addresses are exactly those `ip addr` reports there."""
    assert set(probe["addresses"]) == _ip_command_addresses(("ip", "netns", "exec", namespace))


def test_namespace_resolves_specs(probe):
    """Specs resolved against the real namespace: `eth0` takes the primary
    address, `eth0[1]` the secondary, `eth0[2]` the IPv6 one."""
    resolved = probe["resolved"]
    assert resolved["eth0"] == "10.2.0.1"
    assert resolved["eth0[1]"] == "10.2.0.7"
    assert resolved["eth0[2]"] == "fdc6:238c:c4bc::1"
    assert resolved["eth0:inet6"] == "fdc6:238c:c4bc::1"
    assert resolved["inet"] == "10.2.0.1"
    assert resolved["inet6"] == "fdc6:238c:c4bc::1"
    assert resolved["10.0.0.0/8"] == "10.2.0.1"
    assert resolved["eth1"] == "10.5.0.1"
    assert resolved["eth2"] == "10.20.0.1"
    assert resolved["lo"] == "127.0.0.1"
    assert resolved["eth0:inet5"] == "error: Unable to parse interface spec: eth0:inet5"
