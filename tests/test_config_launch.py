"""The config loader's per-job `user`, `dir`, `env` and `envFile` (issue 14)."""
import pytest

from pilot.config import parse_text
from pilot.config.model import Launch, SecretFile
from pilot.errors import ConfigError
from pilot.users import User


def job_of(fields):
    return parse_text('{jobs: [{name: "web", exec: "/app/server", %s}]}' % fields,
                      "test.json5", {}).jobs[0]


def error_of(fields):
    with pytest.raises(ConfigError) as caught:
        job_of(fields)
    return caught.value


def test_every_field_lands_in_the_jobs_launch():
    job = job_of('''user: "0:0", dir: "/app", envFile: "/etc/web.env",
        env: {LOG_LEVEL: "info", PORT: 8080, DEBUG: false, EMPTY: null,
              DB_PASSWORD: {file: "/run/secrets/db_password"}}''')
    assert job.launch == Launch(
        user=User("0:0", 0, 0, (0,), "root", "/root"), dir="/app", env_file="/etc/web.env",
        env=(("LOG_LEVEL", "info"), ("PORT", "8080"), ("DEBUG", "false"), ("EMPTY", ""),
             ("DB_PASSWORD", SecretFile("/run/secrets/db_password"))))


def test_a_38_job_has_the_default_launch():
    assert job_of("restarts: 1").launch == Launch()


def test_a_numeric_uid_needs_no_passwd_entry():
    """Scratch images have no /etc/passwd entry for 4242."""
    assert job_of('user: "4242:4242"').launch.user == User("4242:4242", 4242, 4242, (4242,))
    assert job_of("user: 4242").launch.user.uid == 4242


def test_env_values_are_hidden_from_the_repr():
    job = job_of('env: {DB_PASSWORD: "hunter2"}')
    assert "hunter2" not in repr(job)


@pytest.mark.parametrize("fields,message", [
    ('user: ""', "job[web].user: must not be empty"),
    ('user: "no-such-user-x"', "job[web].user: no user named 'no-such-user-x' in /etc/passwd"),
    ('user: "root:no-such-group-x"', "job[web].user: no group named 'no-such-group-x' in /etc/group"),
    ('user: "a:b:c"', "job[web].user: 'a:b:c' is not a user"),
    ('user: ["root"]', "'job[web].user' expected type 'string'"),
    ('dir: "app"', 'job[web].dir must be an absolute path (got "app")'),
    ('dir: ""', 'job[web].dir must be an absolute path (got "")'),
    ('envFile: "web.env"', 'job[web].envFile must be an absolute path (got "web.env")'),
    ("env: 5", "job[web].env must be an object of NAME: value (got float64)"),
    ('env: ["A=1"]', "job[web].env must be an object of NAME: value (got slice)"),
    ('env: {"1A": "x"}', 'job[web].env: invalid variable name "1A"'),
    ('env: {"A-B": "x"}', 'job[web].env: invalid variable name "A-B"'),
    ('env: {A: {file: "secret"}}', 'job[web].env.A.file must be an absolute path (got "secret")'),
    ('env: {A: {path: "/x"}}', "'job[web].env.A' has invalid keys: path (valid keys: file)"),
])
def test_invalid_shapes_are_one_line_errors_naming_the_field(fields, message):
    error = error_of(fields)
    assert message in error.message, error.message
    assert "\n" not in str(error)
    assert error.path.startswith("job[web].")


@pytest.mark.parametrize("value", ['["hunter2"]', '{value: "hunter2"}', '"hunter2\\u0000"'])
def test_an_env_error_never_shows_the_value(value):
    """A literal env value may be a secret: errors name its kind only."""
    error = error_of(f"env: {{DB_PASSWORD: {value}}}")
    assert error.message.startswith(("unable to parse jobs: job[web].env.DB_PASSWORD",
                                     "unable to parse jobs: 'job[web].env.DB_PASSWORD'"))
    assert "hunter2" not in str(error)


def test_the_unknown_key_error_lists_the_new_keys():
    message = error_of('usr: "app"').message
    assert "(valid keys: " in message
    assert all(key in message for key in ("user", "dir", "env", "envFile"))


def test_the_debug_dump_of_the_config_shows_env_names_not_values():
    """`loaded config: …` (DEBUG) hides literal values; secret files show their path."""
    from pilot.run import dump_config
    config = parse_text('{jobs: [{name: "web", exec: "/app/server", env: {DB_PASSWORD: "hunter2",'
                        ' API_KEY: {file: "/run/secrets/api_key"}}}]}', "test.json5", {})
    dump = dump_config(config)
    assert "hunter2" not in dump
    assert '["DB_PASSWORD", "(hidden)"]' in dump and "/run/secrets/api_key" in dump
