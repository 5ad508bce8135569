"""The config loader under 10,000 generated configs (a seeded generator, so a
failure names the seed that reproduces it): real configs mutated byte- and
token-wise (JSON5, JSON and YAML, with template actions spliced in), and
random trees under the known keys. Every load ends in a Config or a one-line
ConfigError naming the file: no other exception, no multi-line message, no
load that runs away."""
import json
import os
import random
import time
from pathlib import Path

import pytest

from pilot import config
from pilot.errors import ConfigError
from tests.support import DEADLINE

pytestmark = pytest.mark.timeout(900)

COUNT = int(os.environ.get("PILOT_FUZZ_CONFIGS", "10000"))
SEED = int(os.environ.get("PILOT_FUZZ_SEED", "20261205"))
SLOW = DEADLINE  # a load past this counts as a hang (a normal one takes milliseconds)
CONFIGS = Path(__file__).parent / "configs"
ENV = {"HOST": "web-1", "PORT": "8080", "PARTS": "a:b:c", "EMPTY": ""}

TOKENS = [
    "{", "}", "[", "]", ",", ":", '"', "'", "//", "/*", "*/", "\n", " ", "\\", "null", "true",
    "false", "0", "-1", "1e999", "-0", "NaN", "Infinity", "0x1F", '"x"', "'y'", '"\\u0000"',
    '"\\ud800"', "\u2028", "é", "\ufeff", "\x00", "\x7f", "{{", "}}", "{{ .HOST }}",
    '{{ env "PORT" }}', "{{ .MISSING }}", '{{ .PARTS | split ":" | join "," }}',
    '{{ regexReplaceAll "(a+)+$" "x" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" }}',
    '{{ regexReplaceAll "(" "x" "y" }}', "{{ range loop 3 }}", "{{ end }}", "{{ if }}",
    "{{ loop 100001 }}", "{{ printf \"%d\" 1 }}", '"unlimited"', '"never"', '"10s"', '"-5s"',
    '"SIGHUP"', '"global"', '"exitSuccess"', '"static:10.1.2.3"', '"eth0"', "jobs", "watches",
    "telemetry", "consul", "logging", "control", "health", "when", "interfaces", "name", "exec",
    "- ", "? ", "&a ", "*a", "!!binary ", "!!python/object ", "--- ", "...", "%YAML 1.1\n",
]
SCALARS = [None, True, False, 0, -1, 1.5, 2 ** 70, 1e308, "", " ", "x", "10s", "unlimited",
           "never", "static:10.1.2.3", "SIGHUP", "global", "healthy", "exitSuccess", "app",
           "counter", "c:8500", "https://c:8500", "json", "DEBUG", ["a", 1], {"a": None}]
KEYS = ["consul", "logging", "jobs", "watches", "telemetry", "control", "stopTimeout", "name",
        "exec", "port", "interfaces", "tags", "health", "interval", "ttl", "timeout", "when",
        "source", "once", "each", "restarts", "stopTimeout", "main", "metrics", "type", "help",
        "level", "format", "output", "socket", "address", "scheme", "token", "Name", "EXEC", "x"]


def corpus():
    texts = []
    for path in sorted(CONFIGS.rglob("*")):
        if path.is_file() and path.suffix in (".json5", ".yaml", ".yml", ".json"):
            texts.append((path.suffix, path.read_bytes()))
    good = json.loads(json.dumps({
        "consul": "localhost:8500", "logging": {"level": "INFO"},
        "jobs": [{"name": "app", "exec": ["app", "--x"], "port": 80, "interfaces": ["static:10.1.2.3"],
                  "health": {"exec": "true", "interval": 5, "ttl": 10}, "restarts": "unlimited"},
                 {"name": "cron", "exec": "true", "when": {"interval": "10s"}}],
        "watches": [{"name": "db", "interval": 5}],
        "telemetry": {"port": 9090, "interfaces": ["static:10.1.2.3"],
                      "metrics": [{"name": "hits", "help": "h", "type": "counter"}]}}))
    texts.append((".json", json.dumps(good, indent=2).encode()))
    texts.append((".yaml", b"jobs:\n  - name: app\n    exec: [app]\n    restarts: never\n"))
    return texts


def mutate(rng, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(data) + 1)
        j = min(len(data), i + rng.randint(0, 40))
        if op == 0:
            data = data[:i] + data[j:]
        elif op == 1:
            data = data[:i] + rng.choice(TOKENS).encode("utf-8", "surrogatepass") + data[i:]
        elif op == 2:
            data = data[:i] + data[i:j] * rng.randint(2, 4) + data[j:]
        elif op == 3:
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
        elif op == 4:
            data = data[:i]  # truncated
        else:
            k = rng.randrange(len(data) + 1)
            data = data[:min(i, k)] + data[max(i, k):] + data[min(i, k):max(i, k)]
    return data


def tree(rng, depth=0):
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice(SCALARS)
    if roll < 0.7:
        return [tree(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): tree(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def generate(rng, texts):
    """(file suffix, bytes) of one generated config."""
    if rng.random() < 0.3:
        top = {rng.choice(KEYS[:7]): tree(rng) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.5:
            top["jobs"] = [tree(rng) if rng.random() < 0.3 else
                           {rng.choice(KEYS[7:]): tree(rng, 2) for _ in range(rng.randint(1, 6))}
                           for _ in range(rng.randint(1, 3))]
        return ".json5", json.dumps(top).encode()
    suffix, data = rng.choice(texts)
    return suffix, mutate(rng, data)


def test_ten_thousand_generated_configs_give_a_config_or_one_line(tmp_path):
    rng = random.Random(SEED)
    texts = corpus()
    failures, outcomes, slowest = [], {"config": 0, "error": 0}, (0.0, None)
    for n in range(COUNT):
        suffix, data = generate(rng, texts)
        path = tmp_path / f"c{n % 50}{suffix}"
        path.write_bytes(data)
        start = time.monotonic()
        try:
            config.load(str(path), ENV)
            outcomes["config"] += 1
        except ConfigError as error:
            outcomes["error"] += 1
            message = str(error)
            if not message.startswith(str(path)) or "\n" in message or "\r" in message \
                    or "internal error" in message:
                failures.append((n, "bad error", message[:300]))
        except BaseException as error:  # noqa: BLE001 - anything else is a defect to report
            failures.append((n, type(error).__name__, str(error)[:300], data[:300]))
        took = time.monotonic() - start
        if took > slowest[0]:
            slowest = (took, n)
    assert not failures, f"seed {SEED}: {len(failures)} failures, first: {failures[:5]}"
    assert slowest[0] < SLOW, f"seed {SEED}: config #{slowest[1]} took {slowest[0]:.1f}s"
    assert outcomes["config"] > 0 and outcomes["error"] > 0, outcomes  # both paths were exercised
