"""`interfaces` specs → the IP address a job or telemetry advertises (docs/behaviour.md §8.7).

A spec list is tried spec by spec; for each spec the machine's addresses are
scanned in one fixed order and the first match wins. The order and the spec
grammar are ContainerPilot 3.8's, so a config picks the same IP under Pilot.

The machine's addresses are read over rtnetlink (stdlib sockets only): it sees
every interface, down ones and secondary IPv4 addresses included, and needs no
/proc.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import struct
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from pilot.errors import PilotError

DEFAULT_CHOICES = ("eth0:inet", "inet")

# RE2 `\w` and `\d` are ASCII-only; fullmatch because Go's `$` never matches
# before a trailing newline.
ANY_FAMILY = 0  # any address family: rtnetlink dumps both IPv4 and IPv6
_NAMED = re.compile(r"(\w+)(?:\[(\d+)\]|:(inet6?))?", re.ASCII)
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = 2**63 - 1

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class InterfaceError(PilotError, ValueError):
    """An `interfaces` list that is invalid or matches no address (one line)."""


# --- specs -------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One parsed entry of an `interfaces` list; `text` is what the user wrote."""

    text: str

    def matches(self, name: str, index: int, ip: IPAddress) -> bool:
        """True if address `ip`, the `index`-th of interface `name`, is chosen."""
        raise NotImplementedError

    def __str__(self):
        return self.text


@dataclass(frozen=True)
class FamilySpec(Spec):
    """`inet`, `inet6`, `NAME`, `NAME:inet`, `NAME:inet6` (name None = any)."""

    name: Optional[str] = None
    version: int = 4

    def matches(self, name, index, ip):
        if self.name is None:
            # Only the wildcard skips loopback: `lo:inet` must still find 127.0.0.1.
            return ip.version == self.version and not ip.is_loopback
        return name == self.name and ip.version == self.version


@dataclass(frozen=True)
class IndexSpec(Spec):
    """`NAME[i]`: the i-th address of the interface, IPv4 and IPv6 counted together."""

    name: str = ""
    index: int = 0

    def matches(self, name, index, ip):
        return name == self.name and index == self.index


@dataclass(frozen=True)
class NetworkSpec(Spec):
    """A CIDR: the first address inside it, on any interface (loopback too)."""

    network: Union[ipaddress.IPv4Network, ipaddress.IPv6Network, None] = None

    def matches(self, name, index, ip):
        return ip in self.network


@dataclass(frozen=True)
class StaticSpec(Spec):
    """`static:IP`: that IP, without looking at the interfaces."""

    ip: Optional[IPAddress] = None

    def matches(self, name, index, ip):
        return False


def parse_specs(specs: Sequence[str]) -> List[Spec]:
    """Parse every spec; raise one InterfaceError naming each invalid one.

    The whole list is rejected if any entry is invalid, as in 3.8, so a typo in
    a fallback spec is found at load time rather than on the day it is needed.
    """
    parsed, problems = [], []
    for text in specs:
        try:
            parsed.append(parse_spec(text))
        except InterfaceError as error:
            problems.append(str(error))
    if problems:
        raise InterfaceError("; ".join(problems))
    return parsed


def parse_spec(text: str) -> Spec:
    """Parse one spec, trying the forms in 3.8's order."""
    if text in ("inet", "inet6"):
        return FamilySpec(text, None, 6 if text == "inet6" else 4)
    if text.startswith("static:") and not _is_go_int(text[len("static:"):]):
        return _parse_static(text)
    named = _NAMED.fullmatch(text)
    if named:
        return _parse_named(text, *named.groups())
    network = _parse_network(text)
    if network is not None:
        return NetworkSpec(text, network)
    raise InterfaceError(f"Unable to parse interface spec: {_shown(text)}")


def _shown(text: str) -> str:
    """The spec as the user wrote it, control characters escaped to keep one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _is_go_int(text: str) -> bool:
    """True where Go's strconv.Atoi succeeds: 3.8 then skips the static form."""
    return bool(_GO_INT.fullmatch(text)) and abs(int(text)) <= _INT64_MAX


def _parse_static(text: str) -> StaticSpec:
    """`static:IP`; the message keeps 3.8's wording, `static:` where the IP belongs."""
    ip = _parse_ip(text[len("static:"):])
    if ip is None:
        raise InterfaceError(f"Unable to parse static ip static: in {_shown(text)}")
    return StaticSpec(text, ip)


def _parse_named(text: str, name: str, index: Optional[str], family: Optional[str]) -> Spec:
    """`NAME`, `NAME[i]`, `NAME:inet`, `NAME:inet6`."""
    if index is not None:
        if int(index) > _INT64_MAX:
            raise InterfaceError(f"Unable to parse index {index} in {_shown(text)}")
        return IndexSpec(text, name, int(index))
    return FamilySpec(text, name, 6 if family == "inet6" else 4)


def _parse_ip(text: str) -> Optional[IPAddress]:
    """An IP as Go's net.ParseIP accepts it (no zone, no surrounding junk)."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_network(text: str):
    """A CIDR as Go's net.ParseCIDR accepts it: `IP/prefix`, host bits ignored."""
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isascii() or not prefix.isdigit() or "%" in address:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


# --- resolving -----------------------------------------------------------------


def resolve(
    specs: Union[Sequence[str], str, None],
    addresses: Optional[Sequence[Tuple[str, str]]] = None,
) -> str:
    """The IP to advertise for `specs`, as a string.

    `addresses` are (interface, ip) pairs; None reads the machine's, and only
    if a spec needs them, so `static:` works where netlink does not.
    """
    if isinstance(specs, str):
        specs = [specs]
    parsed = parse_specs(list(specs or DEFAULT_CHOICES))
    ordered = None
    for spec in parsed:
        if isinstance(spec, StaticSpec):
            return format_ip(spec.ip)
        if ordered is None:
            ordered = _ordered(_read_machine() if addresses is None else addresses)
        for name, index, ip in ordered:
            if spec.matches(name, index, ip):
                return format_ip(ip)
    raise InterfaceError(_no_match_message(parsed, ordered or []))


def _read_machine() -> List[Tuple[str, str]]:
    """machine_addresses(), with a failure turned into one clear line."""
    try:
        return machine_addresses()
    except OSError as error:
        raise InterfaceError(f"unable to read the network interfaces: {error}") from None


def _ordered(addresses: Sequence[Tuple[str, str]]) -> List[Tuple[str, int, IPAddress]]:
    """(name, index within the interface, ip) in §8.7's order."""
    pairs = sorted(((name, ipaddress.ip_address(ip)) for name, ip in addresses), key=_order_key)
    ordered, previous, index = [], None, 0
    for name, ip in pairs:
        index = index + 1 if name == previous else 0
        previous = name
        ordered.append((name, index, ip))
    return ordered


def _order_key(pair: Tuple[str, IPAddress]) -> Tuple[bytes, bytes]:
    """Interface name byte-wise, then the IP's 16-byte form (IPv4 as ::ffff:a.b.c.d)."""
    name, ip = pair
    if ip.version == 4:
        ip = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return os.fsencode(name), ip.packed


def format_ip(ip: IPAddress) -> str:
    """Dotted quad for IPv4 (also IPv4-mapped IPv6, as Go prints it), else compressed IPv6."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _no_match_message(specs: Sequence[Spec], ordered) -> str:
    """3.8's message, on one line: the specs and every interface:ip pair."""
    spec_list = " ".join(_shown(spec.text) for spec in specs)
    pairs = " ".join(f"{name}:{format_ip(ip)}" for name, _, ip in ordered)
    return (
        "none of the interface specifications were able to match; "
        f"specifications: [{spec_list}]; interface IPs: [{pairs}]"
    )


# --- reading the machine's addresses over rtnetlink ----------------------------

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFLA_IFNAME, _IFA_ADDRESS, _IFA_LOCAL = 3, 1, 2


def machine_addresses() -> List[Tuple[str, str]]:
    """Every (interface name, ip) of this network namespace, in §8.7's order.

    Includes down interfaces, secondary IPv4 addresses and IPv6 addresses.
    An address is named by its interface, not by its label (`eth0:1`), as Go's
    net.Interfaces() names it.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        names = dict(_links(sock))
        found = [(names[index], ip) for index, ip in _addresses(sock) if index in names]
    return [(name, format_ip(ip)) for name, _, ip in _ordered(found)]


def _links(sock) -> Iterator[Tuple[int, str]]:
    """(index, name) of every link, up or down."""
    request = _IFINFOMSG.pack(ANY_FAMILY, 0, 0, 0, 0)
    for body in _dump(sock, _RTM_GETLINK, _RTM_NEWLINK, request, seq=1):
        _, _, index, _, _ = _IFINFOMSG.unpack_from(body)
        attrs = dict(_attributes(body, _IFINFOMSG.size))
        if _IFLA_IFNAME in attrs:
            yield index, os.fsdecode(attrs[_IFLA_IFNAME].split(b"\0", 1)[0])


def _addresses(sock) -> Iterator[Tuple[int, str]]:
    """(interface index, ip) of every IPv4 and IPv6 address."""
    request = _IFADDRMSG.pack(ANY_FAMILY, 0, 0, 0, 0)
    for body in _dump(sock, _RTM_GETADDR, _RTM_NEWADDR, request, seq=2):
        family, _, _, _, index = _IFADDRMSG.unpack_from(body)
        ip = _address_of(family, dict(_attributes(body, _IFADDRMSG.size)))
        if ip is not None:
            yield index, ip


def _address_of(family: int, attrs: dict) -> Optional[str]:
    """The interface's own address: IFA_LOCAL where set (on point-to-point
    links IFA_ADDRESS is the peer's), else IFA_ADDRESS, as Go reads it."""
    raw = attrs.get(_IFA_LOCAL, attrs.get(_IFA_ADDRESS))
    if family == socket.AF_INET and raw is not None and len(raw) >= 4:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6 and raw is not None and len(raw) >= 16:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return None


def _dump(sock, request_type: int, reply_type: int, payload: bytes, seq: int) -> Iterator[bytes]:
    """Send one dump request; yield the body of every reply of `reply_type`."""
    header = _NLMSG.pack(_NLMSG.size + len(payload), request_type,
                         _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
    sock.sendto(header + payload, (0, 0))
    while True:
        data = sock.recv(1 << 16)
        for msg_type, msg_seq, body in _messages(data):
            if msg_seq != seq:
                continue
            if msg_type == _NLMSG_DONE:
                return
            if msg_type == _NLMSG_ERROR:
                _raise_netlink_error(body)
            elif msg_type == reply_type:
                yield body


def _messages(data: bytes) -> Iterator[Tuple[int, int, bytes]]:
    """Split one datagram into (type, sequence, body) netlink messages."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, msg_type, _, msg_seq, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            return
        yield msg_type, msg_seq, data[offset + _NLMSG.size:offset + length]
        offset += _align(length)


def _attributes(body: bytes, offset: int) -> Iterator[Tuple[int, bytes]]:
    """(type, value) of the route attributes after a fixed header."""
    offset = _align(offset)
    while offset + _RTATTR.size <= len(body):
        length, attr_type = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            return
        yield attr_type, body[offset + _RTATTR.size:offset + length]
        offset += _align(length)


def _raise_netlink_error(body: bytes) -> None:
    """NLMSG_ERROR carries a negative errno; 0 is an acknowledgement."""
    (code,) = struct.unpack_from("=i", body)
    if code:
        raise OSError(-code, f"netlink: {os.strerror(-code)}")


def _align(length: int) -> int:
    """Netlink messages and attributes are padded to 4 bytes."""
    return (length + 3) & ~3
