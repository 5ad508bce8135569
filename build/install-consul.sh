#!/usr/bin/env bash
# Make a real Consul agent available for tests and the demo.
#
# A `consul` already on PATH wins. Otherwise the Debian 11 (bullseye) package
# (Debian 12 has none) is fetched with apt through a private sources list --
# the mirror is the one this machine's apt already uses, so no host name lives
# in the project -- and unpacked into .cache/consul/ under the repository root.
# Idempotent; silent on success; one line on stderr and a non-zero exit on
# failure. `build/consul-path.sh` prints which binary to use.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/consul"
BINARY="$CACHE/usr/bin/consul"
SUITE="bullseye"

fail() {
    echo "install-consul: $*" >&2
    exit 1
}

# Print the main Debian mirror URI this machine's apt is configured with.
# deb822 files first (the stanza for the release itself, not -security or
# -updates), then the one-line format.
mirror_uri() {
    local codename
    codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v want="$codename" '
            function flush() {
                if (uri != "" && (want == "" || (" " suites " ") ~ (" " want " ")))
                    { print uri; found = 1; exit }
                uri = ""; suites = ""
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            END { if (!found) flush() }
        ' "$f"
    done | head -n 1 | grep . && return 0
    local list
    for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$list" ] || continue
        awk -v want="$codename" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if (want == "" || $(i + 1) == want) { print $i; exit }
            }
        ' "$list"
    done | head -n 1 | grep . && return 0
    return 1
}

# Which keyring can verify bullseye's Release file; empty means none found.
keyring() {
    local k
    for k in /usr/share/keyrings/debian-archive-keyring.gpg \
             /usr/share/keyrings/debian-archive-bullseye-stable.gpg; do
        [ -r "$k" ] && { echo "$k"; return 0; }
    done
    return 0
}

fetch_and_unpack() {
    command -v apt-get >/dev/null || fail "no consul on PATH and no apt-get to fetch it"
    command -v dpkg >/dev/null || fail "no consul on PATH and no dpkg to unpack it"
    local uri key opts arch
    uri="$(mirror_uri)" || fail "no Debian mirror found in /etc/apt sources"
    key="$(keyring)"
    opts="trusted=yes"
    [ -n "$key" ] && opts="signed-by=$key"
    arch="$(dpkg --print-architecture)"

    mkdir -p "$ROOT/.cache"
    WORK="$(mktemp -d "$ROOT/.cache/consul-apt.XXXXXX")"
    trap 'rm -rf "$WORK" "$CACHE.new"' EXIT
    local work="$WORK"
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
    echo "deb [$opts] $uri $SUITE main" > "$work/sources.list"

    local apt=(apt-get -qq
        -o "Dir::Etc::sourcelist=$work/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists"
        -o "Dir::Cache=$work/cache"
        -o "APT::Architectures=$arch"
        -o "Acquire::Languages=none"
        -o "APT::Sandbox::User=root")

    "${apt[@]}" update >"$work/log" 2>&1 \
        || fail "apt-get update of $SUITE failed: $(grep -m1 -E '^(E|W):' "$work/log" || tail -n 1 "$work/log")"
    (cd "$work/deb" && "${apt[@]}" download consul) >"$work/log" 2>&1 \
        || fail "apt-get download consul failed: $(grep -m1 -E '^(E|W):' "$work/log" || tail -n 1 "$work/log")"

    local deb
    deb="$(ls "$work"/deb/consul_*.deb 2>/dev/null | head -n 1)"
    [ -n "$deb" ] || fail "apt-get download produced no consul package"
    rm -rf "$CACHE.new"
    dpkg -x "$deb" "$CACHE.new" || fail "dpkg -x $deb failed"
    [ -x "$CACHE.new/usr/bin/consul" ] || fail "package has no usr/bin/consul"
    rm -rf "$CACHE"
    mv "$CACHE.new" "$CACHE"
}

main() {
    command -v consul >/dev/null && return 0
    [ -x "$BINARY" ] && "$BINARY" version >/dev/null 2>&1 && return 0
    fetch_and_unpack
    "$BINARY" version >/dev/null 2>&1 || fail "unpacked $BINARY does not run"
}

main "$@"
