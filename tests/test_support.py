"""The shared test helpers (tests/support.py) and the suite-wide fixture that
fails a test whose greenlets died (tests/conftest.py)."""
import os
import subprocess
import sys
import textwrap

import gevent
import pytest

from tests.support import alive, count_lines, free_port, http_request, taken_port, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wait_for_returns_the_first_truthy_value():
    """The condition's own value comes back, so a test can wait and use it at once."""
    answers = iter([None, 0, "", {"ready": 1}])
    assert wait_for(lambda: next(answers), interval=0) == {"ready": 1}


def test_wait_for_names_what_it_waited_for_at_the_deadline():
    """A condition that never holds fails the test with `what`, which may be a
    function called only then (a log quoted at the deadline, not at the start)."""
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the sky"):
        wait_for(lambda: False, 0.05, "the sky")
    said = []
    with pytest.raises(AssertionError, match="late words"):
        wait_for(lambda: False, 0.05, lambda: said.append(1) or "late words")
    assert said == [1]


def test_wait_for_lets_other_greenlets_run():
    """Waiting yields to the hub: a greenlet that makes the condition true gets its turn."""
    flag = []
    gevent.spawn(flag.append, True)
    assert wait_for(lambda: flag) == [True]


def test_free_port_is_never_handed_out_twice():
    """Two agents' ports chosen back to back never collide."""
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20


def test_taken_port_refuses_a_second_listener_until_the_block_ends():
    """While the block runs the port is bound; afterwards it is free again."""
    import socket
    with taken_port() as port:
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))


def test_http_request_is_none_while_nothing_listens():
    """Nothing on the port: None, so `wait_for(lambda: http_request(url))` waits for a listener."""
    assert http_request(f"http://127.0.0.1:{free_port()}/status", timeout=5) is None


def test_count_lines_and_alive(tmp_path):
    """A missing file has 0 lines; a reaped child is not alive, this process is."""
    path = tmp_path / "runs"
    assert count_lines(path) == 0
    path.write_text("run\nrun\n")
    assert count_lines(path) == 2
    child = subprocess.Popen(["true"])
    child.wait()
    assert not alive(child.pid) and alive(os.getpid())


def test_a_greenlet_death_is_recorded_for_the_test(greenlet_errors):
    """A greenlet dying of an exception lands in the fixture's list (this test
    expected it and clears it); a greenlet killed the normal way does not."""
    def broken():
        raise ValueError("bug in the background")
    gevent.spawn(broken).join()
    gevent.spawn(gevent.sleep, 60).kill()
    assert [(kind, str(value)) for _, kind, value, _ in greenlet_errors] == [
        (ValueError, "bug in the background")]
    greenlet_errors.clear()


def test_a_test_whose_greenlet_died_fails(tmp_path):
    """Negative control, in a separate pytest run: a test that passes on its
    own but left a greenlet dead of an exception is reported failed, with the
    greenlet's traceback; its healthy neighbour passes."""
    module = tmp_path / "test_inner.py"
    module.write_text(textwrap.dedent("""
        import gevent

        def test_background_bug():
            def broken():
                raise KeyError("lost in the background")
            gevent.spawn(broken)
            gevent.sleep(0)

        def test_healthy():
            gevent.spawn(lambda: None).join()
    """))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(module)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "greenlet(s) died of an exception during the test" in done.stdout
    assert "KeyError: 'lost in the background'" in done.stdout
