/*
 * fastcall.c: the launcher answers a client call itself, without starting Python.
 *
 * A job's `pilot -putmetric`, a HEALTHCHECK's `pilot -health` or a `docker exec pilot
 * -status` reusing the running Pilot's unpacked copy used to start the bundled Python
 * (~50-80 ms and ~14 MB, most of it the interpreter and the config load) to send one
 * HTTP request over the control socket. The running Pilot writes down, in its unpacked
 * copy, where its socket is and which config it serves (pilot/control.py, write_record):
 *
 *   .pilot-control: fields ended by NUL: "pilot-control-record-1", socket path, the
 *   socket file's device and inode, the config's canonical path, device, inode, size,
 *   mtime_ns, ctime_ns, the digest of the environment variables the config's load read,
 *   their number, their names.
 *
 * A file with that identity, rendered against variables with those values, loads into
 * the same config (pilot/config: ConfigSource), so when the call asks for that config
 * (-config, else $CONTAINERPILOT, as canonical paths), the file is unchanged and the
 * caller's values of those variables have the recorded digest, the socket Python would
 * find is the recorded one. Then this file does what pilot/client.py does, with the same
 * safety rules: the socket must be the caller's or root's (and the very file the
 * recording server bound), the listening process (SO_PEERCRED) the caller's or root's
 * before a byte is sent, and a full backlog (EAGAIN) is waited out within the client's
 * 10 s. It sends the bytes Python sends and prints what Python prints: `ok`, the status
 * table and the health lines (which the server renders with Python's own code when asked
 * for `format=text`), and the same error lines and exit statuses.
 *
 * Anything else (no record, another config, an edited file, other values, a socket
 * missing, refused or not trusted, flags it does not handle, arguments that are not
 * UTF-8, a locale that is not UTF-8) returns before anything is sent, and Python runs
 * as before and prints its own words: no request is ever sent twice. After the request
 * is sent, every outcome is reported here, with Python's words.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fastcall.h"

#define RECORD ".pilot-control"
#define RECORD_MAGIC "pilot-control-record-1"
#define RECORD_MAX (1 << 20)
#define TIMEOUT_MS 10000     /* pilot/client.py TIMEOUT */
#define MAX_BACKOFF_MS 50    /* pilot/client.py MAX_BACKOFF */
#define MAX_ANSWER (16 << 20) /* pilot/client.py MAX_ANSWER */
#define MAX_INT_DIGITS 4300  /* Python's int() limit on decimal digits */

extern char **environ;

/* ---- a growable byte buffer --------------------------------------------------------- */

struct buf {
    char *data;
    size_t len, cap;
};

static void add(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            _exit(1);  /* out of memory in a 1 MB process: nothing sensible remains */
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void adds(struct buf *b, const char *s)
{
    add(b, s, strlen(s));
}

static void addf(struct buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    add(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- text as Python sees it ------------------------------------------------------------ */

/* The code point of the UTF-8 sequence at s[0..n), and its length in *len; -1 when it is
 * not a valid sequence (overlong, beyond U+10FFFF, truncated). Encoded surrogates are
 * valid only with `surrogates` (Python's surrogatepass). On -1, *len is the length of
 * the maximal invalid subpart, which Python's "replace" turns into one U+FFFD. */
static long utf8_next(const unsigned char *s, size_t n, size_t *len, int surrogates)
{
    unsigned char b = s[0];
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED && !surrogates)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else {
        *len = 1;
        return -1;
    }
    long cp = b & (0x3F >> need);
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < (k == 1 ? lo : 0x80) || s[k] > (k == 1 ? hi : 0xBF)) {
            *len = k;
            return -1;
        }
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    *len = need + 1;
    return cp;
}

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), len;
    for (size_t i = 0; i < n; i += len)
        if (utf8_next(p + i, n - i, &len, 0) < 0)
            return 0;
    return 1;
}

static void add_utf8(struct buf *b, long cp)
{
    unsigned char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = 0xC0 | (cp >> 6);
        out[1] = 0x80 | (cp & 0x3F);
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = 0xE0 | (cp >> 12);
        out[1] = 0x80 | ((cp >> 6) & 0x3F);
        out[2] = 0x80 | (cp & 0x3F);
        n = 3;
    } else {
        out[0] = 0xF0 | (cp >> 18);
        out[1] = 0x80 | ((cp >> 12) & 0x3F);
        out[2] = 0x80 | ((cp >> 6) & 0x3F);
        out[3] = 0x80 | (cp & 0x3F);
        n = 4;
    }
    add(b, out, n);
}

/* A Python str held as UTF-8 whose surrogates are encoded too (surrogatepass), added as
 * Python's stderr writes it: UTF-8, a surrogate as `\udcXX` (backslashreplace). */
static void add_pystr(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        long cp = utf8_next(p + i, n - i, &len, 1);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            addf(b, "\\u%04lx", cp);
        else
            add(b, p + i, cp < 0 ? (len = 1) : len);
    }
}

/* Bytes Python decoded with surrogateescape (a path, an argument): each byte that is
 * not part of valid UTF-8 is the surrogate U+DC00+byte, written as `\udcXX`. */
static void add_escaped_bytes(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        if (utf8_next(p + i, n - i, &len, 0) < 0) {
            addf(b, "\\udc%02x", p[i]);
            len = 1;
        } else {
            add(b, p + i, len);
        }
    }
}

/* str.isspace() for a code point (what str.strip() removes). */
static int py_space(long cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0
           || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029
           || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* bytes.decode("utf-8", "replace").strip(), as UTF-8. */
static void decode_replace_strip(struct buf *out, const char *s, size_t n)
{
    struct buf text = {0};
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    for (size_t i = 0; i < n; i += len) {
        long cp = utf8_next(p + i, n - i, &len, 0);
        add_utf8(&text, cp < 0 ? 0xFFFD : cp);
    }
    size_t start = 0, end = text.len;
    const unsigned char *t = (const unsigned char *)text.data;
    while (start < end) {
        long cp = utf8_next(t + start, end - start, &len, 0);
        if (!py_space(cp))
            break;
        start += len;
    }
    while (end > start) {
        size_t back = end - 1;
        while (back > start && (t[back] & 0xC0) == 0x80)
            back--;
        long cp = utf8_next(t + back, end - back, &len, 0);
        if (!py_space(cp))
            break;
        end = back;
    }
    if (end > start)
        add(out, t + start, end - start);
    free(text.data);
}

/* Python's repr() of a str decoded as Latin-1 (each byte a code point). */
static void add_latin1_repr(struct buf *b, const unsigned char *s, size_t n)
{
    int single = 0, dbl = 0;
    for (size_t i = 0; i < n; i++) {
        single |= s[i] == '\'';
        dbl |= s[i] == '"';
    }
    char quote = single && !dbl ? '"' : '\'';
    add(b, &quote, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == quote || c == '\\')
            addf(b, "\\%c", c);
        else if (c == '\t')
            adds(b, "\\t");
        else if (c == '\n')
            adds(b, "\\n");
        else if (c == '\r')
            adds(b, "\\r");
        else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0xA0) || c == 0xAD)
            addf(b, "\\x%02x", c);
        else
            add_utf8(b, c);
    }
    add(b, &quote, 1);
}

/* ---- the environment, as os.environ has it ------------------------------------------ */

/* The value of `name` in this process's environment as Python's os.environ holds it:
 * the first entry with that name (CONTAINERPILOT_PID is set by pilot/cli.py first). */
static const char *env_get(const char *name, size_t n)
{
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && (size_t)(eq - *e) == n && memcmp(*e, name, n) == 0)
            return eq + 1;
    }
    return NULL;
}

/* Python decodes arguments and its output with the locale's encoding, which is UTF-8
 * here unless a locale variable names another one (a C or POSIX locale, or none, puts
 * Python in UTF-8 mode). Anything else is left to Python. */
static int utf8_locale(void)
{
    static const char *vars[] = {"LC_ALL", "LC_CTYPE", "LANG", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = env_get(vars[i], strlen(vars[i]));
        if (!v || !v[0])
            continue;
        return strcmp(v, "C") == 0 || strcmp(v, "POSIX") == 0 || strcasestr(v, "utf-8")
               || strcasestr(v, "utf8");
    }
    return 1;
}

/* ---- the call, parsed as pilot/cli.py parses it ------------------------------------ */

enum action { NONE, RELOAD, MAINTENANCE, PUTENV, PUTMETRIC, PING, STATUS, HEALTH, SIGNAL, STOP,
              START, RESTART };

static const char *flag_names[] = {"", "-reload", "-maintenance", "-putenv", "-putmetric", "-ping",
                                   "-status", "-health", "-signal", "-stop", "-start", "-restart"};

struct pair {
    const char *key, *value;
    size_t key_len;
};

struct map {
    struct pair *items;
    int count;
};

struct call {
    int template_, version, reload, ping, status, health, help, events, follow;
    const char *config, *out, *maintenance, *stop, *start, *restart, *signal, *render, *since;
    struct map putenv, putmetric;
    enum action action;
    const char *job;  /* the job a -stop/-start/-restart/-signal names */
};

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "1") || !strcasecmp(v, "t") || !strcasecmp(v, "true"))
        *out = 1;
    else if (!strcasecmp(v, "0") || !strcasecmp(v, "f") || !strcasecmp(v, "false"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* `-putenv K=V`: a dict, so a repeated key keeps its first place and takes the last value. */
static int map_set(struct map *m, const char *value, int capacity)
{
    const char *eq = strchr(value, '=');
    if (!eq)
        return -1;
    size_t n = eq - value;
    for (int i = 0; i < m->count; i++)
        if (m->items[i].key_len == n && memcmp(m->items[i].key, value, n) == 0) {
            m->items[i].value = eq + 1;
            return 0;
        }
    if (!m->items && !(m->items = calloc(capacity, sizeof *m->items)))
        return -1;
    m->items[m->count++] = (struct pair){value, eq + 1, n};
    return 0;
}

static int set_string(struct call *c, const char *name, const char *value, int capacity)
{
    if (!strcmp(name, "putenv"))
        return map_set(&c->putenv, value, capacity);
    if (!strcmp(name, "putmetric"))
        return map_set(&c->putmetric, value, capacity);
    if (!strcmp(name, "signal") && value[0]) {
        const char *eq = strchr(value, '=');
        if (!eq || eq == value || !eq[1])
            return -1;
    }
    if (!strcmp(name, "maintenance") && value[0] && strcmp(value, "enable") && strcmp(value, "disable"))
        return -1;
    struct { const char *name; const char **field; } strings[] = {
        {"config", &c->config}, {"out", &c->out}, {"maintenance", &c->maintenance},
        {"stop", &c->stop}, {"start", &c->start}, {"restart", &c->restart},
        {"signal", &c->signal}, {"render", &c->render}, {"since", &c->since}};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++)
        if (!strcmp(name, strings[i].name)) {
            *strings[i].field = value;
            return 0;
        }
    return -1;
}

static int *bool_field(struct call *c, const char *name)
{
    struct { const char *name; int *field; } bools[] = {
        {"template", &c->template_}, {"version", &c->version}, {"reload", &c->reload},
        {"ping", &c->ping}, {"status", &c->status}, {"health", &c->health}, {"help", &c->help},
        {"h", &c->help}, {"events", &c->events}, {"follow", &c->follow}};
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
        if (!strcmp(name, bools[i].name))
            return bools[i].field;
    return NULL;
}

static int takes_value(const char *name)
{
    static const char *names[] = {"config", "out", "maintenance", "stop", "start", "restart",
                                  "signal", "render", "since", "putenv", "putmetric", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(name, names[i]))
            return 1;
    return 0;
}

/* Go's flag syntax as pilot/cli.py parse_args reads it; -1 for a usage error or -graph
 * (Python answers those). */
static int parse_call(char **argv, struct call *c)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--") || arg[0] != '-' || !strcmp(arg, "-"))
            break;
        if (!strncmp(arg, "---", 3))
            return -1;
        const char *start = arg + (arg[1] == '-' ? 2 : 1), *eq = strchr(start, '=');
        char name[64];
        size_t len = eq ? (size_t)(eq - start) : strlen(start);
        if (len == 0 || len >= sizeof name)
            return -1;
        memcpy(name, start, len);
        name[len] = 0;
        int *flag = bool_field(c, name);
        if (flag) {
            if (!eq)
                *flag = 1;
            else if (parse_bool(eq + 1, flag) < 0)
                return -1;
        } else if (takes_value(name)) {
            const char *value = eq ? eq + 1 : argv[++i];
            if (!value || set_string(c, name, value, argc) < 0)
                return -1;
        } else {
            return -1;  /* -graph, or a flag that is not defined */
        }
    }
    if ((c->follow && !c->status) || (c->since && c->since[0] && !c->events))
        return -1;
    return 0;
}

/* The action pilot/cli.py _client would take, in its order; NONE when Python must run
 * (help, version, template, render, the event stream and the live view). */
static enum action choose(struct call *c)
{
    if (c->help || c->version || c->template_ || (c->render && c->render[0]) || c->events
        || c->follow)
        return NONE;
    if (c->reload)
        return RELOAD;
    if (c->maintenance && c->maintenance[0])
        return MAINTENANCE;
    if (c->putenv.count)
        return PUTENV;
    if (c->putmetric.count)
        return PUTMETRIC;
    if (c->ping)
        return PING;
    if (c->status)
        return STATUS;
    if (c->health)
        return HEALTH;
    if (c->signal && c->signal[0])
        return SIGNAL;
    if (c->stop && c->stop[0]) {
        c->job = c->stop;
        return STOP;
    }
    if (c->start && c->start[0]) {
        c->job = c->start;
        return START;
    }
    if (c->restart && c->restart[0]) {
        c->job = c->restart;
        return RESTART;
    }
    return NONE;
}

/* Every argument that goes into the request is UTF-8 (Python would carry other bytes as
 * surrogates, and fail on some of them). */
static int arguments_are_text(const struct call *c)
{
    const struct map *maps[] = {&c->putenv, &c->putmetric};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < maps[m]->count; i++)
            if (!valid_utf8(maps[m]->items[i].key) || !valid_utf8(maps[m]->items[i].value))
                return 0;
    return (!c->job || valid_utf8(c->job)) && (!c->signal || valid_utf8(c->signal));
}

/* ---- the request, byte for byte as pilot/client.py makes it ----------------------- */

/* json.dumps of a str (ensure_ascii): \uXXXX in lower-case hex beyond ASCII. */
static void add_json_string(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len;
    add(b, "\"", 1);
    for (size_t i = 0; i < n; i += len) {
        long cp = utf8_next(p + i, n - i, &len, 0);
        if (cp == '"')
            adds(b, "\\\"");
        else if (cp == '\\')
            adds(b, "\\\\");
        else if (cp == '\n')
            adds(b, "\\n");
        else if (cp == '\r')
            adds(b, "\\r");
        else if (cp == '\t')
            adds(b, "\\t");
        else if (cp == '\b')
            adds(b, "\\b");
        else if (cp == '\f')
            adds(b, "\\f");
        else if (cp >= 0x20 && cp < 0x7F)
            add(b, p + i, 1);
        else if (cp < 0x10000)
            addf(b, "\\u%04lx", cp);
        else
            addf(b, "\\u%04lx\\u%04lx", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
    }
    add(b, "\"", 1);
}

static void add_json_map(struct buf *b, const struct map *m)
{
    add(b, "{", 1);
    for (int i = 0; i < m->count; i++) {
        if (i)
            adds(b, ", ");
        add_json_string(b, m->items[i].key, m->items[i].key_len);
        adds(b, ": ");
        add_json_string(b, m->items[i].value, strlen(m->items[i].value));
    }
    add(b, "}", 1);
}

/* client.quote: a job name as one URL path segment. */
static void add_quoted(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
            || c == '.' || c == '_' || c == '~')
            add(b, &c, 1);
        else
            addf(b, "%%%02X", c);
    }
}

/* The signal's JSON value: int(sig) when sig.strip().isdigit(), else the string. ASCII
 * only: Python's isdigit() and int() also take other scripts' digits. */
static int add_signal_body(struct buf *b, const char *sig)
{
    for (const char *p = sig; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return -1;
    const char *start = sig, *end = sig + strlen(sig);
    while (start < end && py_space((unsigned char)*start))
        start++;
    while (end > start && py_space((unsigned char)end[-1]))
        end--;
    int digits = end > start;
    for (const char *p = start; p < end; p++)
        digits &= *p >= '0' && *p <= '9';
    adds(b, "{\"signal\": ");
    if (digits) {
        if (end - start > MAX_INT_DIGITS)
            return -1;
        while (start < end - 1 && *start == '0')
            start++;
        add(b, start, end - start);
    } else {
        add_json_string(b, sig, strlen(sig));
    }
    add(b, "}", 1);
    return 0;
}

static int build_request(const struct call *c, struct buf *req)
{
    struct buf url = {0}, body = {0};
    const char *method = "POST";
    int has_body = 0;
    switch (c->action) {
    case RELOAD:
        adds(&url, "/v3/reload");
        break;
    case MAINTENANCE:
        addf(&url, "/v3/maintenance/%s", strcmp(c->maintenance, "enable") ? "disable" : "enable");
        break;
    case PUTENV:
    case PUTMETRIC:
        adds(&url, c->action == PUTENV ? "/v3/environ" : "/v3/metric");
        add_json_map(&body, c->action == PUTENV ? &c->putenv : &c->putmetric);
        has_body = 1;
        break;
    case PING:
        method = "GET";
        adds(&url, "/v3/ping");
        break;
    case STATUS:
    case HEALTH:
        method = "GET";
        adds(&url, c->action == STATUS ? "/v3/status?format=text" : "/v3/health?format=text");
        break;
    case SIGNAL: {
        const char *eq = strchr(c->signal, '=');
        adds(&url, "/v3/jobs/");
        add_quoted(&url, c->signal, eq - c->signal);
        adds(&url, "/signal");
        if (add_signal_body(&body, eq + 1) < 0) {
            free(url.data);
            free(body.data);
            return -1;
        }
        has_body = 1;
        break;
    }
    default:
        adds(&url, "/v3/jobs/");
        add_quoted(&url, c->job, strlen(c->job));
        adds(&url, c->action == STOP ? "/stop" : c->action == START ? "/start" : "/restart");
    }
    addf(req, "%s ", method);
    add(req, url.data, url.len);
    adds(req, " HTTP/1.0\r\nHost: control\r\n");
    if (has_body)
        addf(req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body.len);
    else if (!strcmp(method, "POST"))
        adds(req, "Content-Length: 0\r\n");
    adds(req, "\r\n");
    if (has_body)
        add(req, body.data, body.len);
    free(url.data);
    free(body.data);
    return 0;
}

/* ---- the record, and whether it answers for this call ------------------------------ */

enum { R_MAGIC, R_SOCKET, R_SOCKET_DEV, R_SOCKET_INO, R_CONFIG, R_DEV, R_INO, R_SIZE, R_MTIME,
       R_CTIME, R_DIGEST, R_COUNT, R_NAMES };

struct record {
    char *data;
    const char *field[R_NAMES];
    size_t socket_len;
    const char **names;
    int count;
};

/* Read $PILOT_BUNDLE/.pilot-control through the checked copy's descriptor: a regular
 * file of the caller's (the copy is), readable by nobody else, whole. */
static int read_record(int dirfd, struct record *r)
{
    struct stat st;
    int fd = openat(dirfd, RECORD, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)
        || st.st_size <= 0 || st.st_size > RECORD_MAX || !(r->data = malloc(st.st_size + 1))) {
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, r->data, st.st_size + 1);
    close(fd);
    if (n != st.st_size || r->data[n - 1] != 0)
        return -1;
    char *p = r->data, *end = r->data + n;
    for (int i = 0; i < R_NAMES; i++) {
        if (p >= end)
            return -1;
        r->field[i] = p;
        if (i == R_SOCKET)
            r->socket_len = strlen(p);
        p += strlen(p) + 1;
    }
    char *rest;
    long count = strtol(r->field[R_COUNT], &rest, 10);
    if (strcmp(r->field[R_MAGIC], RECORD_MAGIC) || *rest || count < 0 || count > 100000
        || !(r->names = calloc(count + 1, sizeof *r->names)))
        return -1;
    for (r->count = 0; r->count < count; r->count++) {
        if (p >= end)
            return -1;
        r->names[r->count] = p;
        p += strlen(p) + 1;
    }
    return p == end ? 0 : -1;
}

static int same_number(const char *recorded, unsigned long long value)
{
    char text[32];
    snprintf(text, sizeof text, "%llu", value);
    return strcmp(recorded, text) == 0;
}

static unsigned long long ns(struct timespec t)
{
    return (unsigned long long)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

/* The config the call asks for is the recorded one, as its file is now. */
static int same_config(const struct record *r, const char *path)
{
    char canonical[PATH_MAX];
    struct stat st;
    if (!realpath(path, canonical) || strcmp(canonical, r->field[R_CONFIG]))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);  /* Python must be able to read it too */
    int same = fd >= 0 && fstat(fd, &st) == 0 && same_number(r->field[R_DEV], st.st_dev)
               && same_number(r->field[R_INO], st.st_ino)
               && same_number(r->field[R_SIZE], st.st_size)
               && same_number(r->field[R_MTIME], ns(st.st_mtim))
               && same_number(r->field[R_CTIME], ns(st.st_ctim));
    if (fd >= 0)
        close(fd);
    return same;
}

/* pilot/config env_digest over this process's environment. */
static int same_environment(const struct record *r)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    char pid[32], digest[17];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int i = 0; i < r->count; i++) {
        const char *name = r->names[i];
        size_t n = strlen(name);
        const char *value = strcmp(name, "CONTAINERPILOT_PID") ? env_get(name, n) : pid;
        struct buf entry = {0};
        add(&entry, name, n + 1);
        if (value) {
            add(&entry, "=", 1);
            add(&entry, value, strlen(value) + 1);
        } else {
            add(&entry, "!", 2);
        }
        for (size_t k = 0; k < entry.len; k++)
            h = (h ^ (unsigned char)entry.data[k]) * 0x100000001B3ULL;
        free(entry.data);
    }
    snprintf(digest, sizeof digest, "%016llx", (unsigned long long)h);
    return strcmp(digest, r->field[R_DIGEST]) == 0;
}

/* ---- reporting ------------------------------------------------------------------------- */

static const struct call *current;
static const struct record *recorded;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= w;
    }
}

/* `pilot: -putmetric: failed to run subcommand: MESSAGE` (pilot/cli.py _FAILED), exit 1.
 * `message` is a Python str held as UTF-8 with surrogates (add_pystr). */
static void fail_with(const char *message, size_t n)
{
    struct buf line = {0};
    enum action a = current->action;
    addf(&line, "pilot: %s: %s: ", flag_names[a],
         a == RELOAD || a == MAINTENANCE || a == PUTENV || a == PUTMETRIC
             ? "failed to run subcommand" : "failed");
    add_pystr(&line, message, n);
    add(&line, "\n", 1);
    write_all(2, line.data, line.len);
    _exit(1);
}

/* `control socket PATH: WHAT` (a transport failure after the request went out). */
static void fail_socket(const char *what)
{
    struct buf m = {0};
    adds(&m, "control socket ");
    struct buf path = {0};
    add_escaped_bytes(&path, recorded->field[R_SOCKET], recorded->socket_len);
    add(&m, path.data, path.len);
    adds(&m, ": ");
    adds(&m, what);
    fail_with(m.data, m.len);
}

static void fail_errno(int err)
{
    char what[160];
    snprintf(what, sizeof what, "[Errno %d] %s", err, strerror(err));
    fail_socket(what);
}

/* ---- the socket ---------------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}

static int trusted_uid(uid_t uid)
{
    return uid == geteuid() || uid == 0;
}

/* Connected to the recorded socket, its listener checked; -1 (nothing sent, Python
 * takes over) on anything but a full backlog that stays full for TIMEOUT_MS. */
static int open_socket(const struct record *r)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct stat st;
    const char *path = r->field[R_SOCKET];
    if (r->socket_len == 0 || r->socket_len >= sizeof addr.sun_path || stat(path, &st) < 0
        || !S_ISSOCK(st.st_mode) || !trusted_uid(st.st_uid)
        || !same_number(r->field[R_SOCKET_DEV], st.st_dev)
        || !same_number(r->field[R_SOCKET_INO], st.st_ino))
        return -1;
    memcpy(addr.sun_path, path, r->socket_len);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + r->socket_len + 1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    long deadline = now_ms() + TIMEOUT_MS, pause = 1;
    while (connect(fd, (struct sockaddr *)&addr, len) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            close(fd);
            return -1;
        }
        long left = deadline - now_ms();
        if (left <= 0)
            fail_socket("no free connection slot within 10 s (Pilot is busy)");
        long wait = pause < left ? pause : left;
        struct timespec t = {wait / 1000, (wait % 1000) * 1000000L};
        nanosleep(&t, NULL);
        pause = pause * 2 < MAX_BACKOFF_MS ? pause * 2 : MAX_BACKOFF_MS;
    }
    struct ucred peer;
    socklen_t size = sizeof peer;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) < 0 || !trusted_uid(peer.uid)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Wait up to `ms` for `events`; 0 when it timed out. */
static int wait_for(int fd, short events, long ms)
{
    struct pollfd p = {fd, events, 0};
    for (;;) {
        int n = poll(&p, 1, ms < 0 ? 0 : ms);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return 1;  /* the call that follows reports the error */
    }
}

/* sendall() with a 10 s budget for all of it, then everything until the server closes,
 * 10 s per read (Python's socket timeout). */
static void exchange(int fd, const struct buf *req, struct buf *answer)
{
    long deadline = now_ms() + TIMEOUT_MS;
    for (size_t sent = 0; sent < req->len;) {
        if (!wait_for(fd, POLLOUT, deadline - now_ms()))
            fail_socket("timed out");
        ssize_t n = send(fd, req->data + sent, req->len - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            fail_errno(errno);
        sent += n;
    }
    char chunk[65536];
    for (;;) {
        if (!wait_for(fd, POLLIN, TIMEOUT_MS))
            fail_socket("timed out");
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            fail_errno(errno);
        if (n == 0)
            return;
        add(answer, chunk, n);
        if (answer->len > MAX_ANSWER)
            fail_socket("answer larger than 16777216 bytes");
    }
}

/* ---- the answer, read as pilot/client.py _parse_answer reads it -------------------- */

/* str.strip() of Latin-1 text (each byte a code point). */
static void strip_latin1(const char **s, size_t *n)
{
    while (*n && py_space((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n && py_space((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

static void fail_bad_answer(const char *what, const char *extra, size_t extra_len)
{
    struct buf m = {0};
    adds(&m, what);
    if (extra) {
        for (size_t i = 0; i < extra_len; i++)
            add_utf8(&m, (unsigned char)extra[i]);  /* Latin-1 */
    }
    fail_socket(m.data);
}

/* The value of header `want` (lower-case), Python's way: the last one wins. */
static int header(const char *head, size_t n, const char *want, const char **value, size_t *len)
{
    int found = 0;
    const char *line = memmem(head, n, "\r\n", 2);
    while (line) {
        line += 2;
        const char *end = memmem(line, head + n - line, "\r\n", 2);
        size_t line_len = end ? (size_t)(end - line) : (size_t)(head + n - line);
        const char *colon = memchr(line, ':', line_len);
        if (colon) {
            const char *name = line, *v = colon + 1;
            size_t name_len = colon - line, v_len = line + line_len - v;
            strip_latin1(&name, &name_len);
            strip_latin1(&v, &v_len);
            if (name_len == strlen(want) && !strncasecmp(name, want, name_len)) {
                *value = v;
                *len = v_len;
                found = 1;
            }
        }
        line = end;
    }
    return found;
}

/* int(size_text, 16) of a stripped chunk-size line: sign, 0x, single underscores. */
static int chunk_size(const char *s, size_t n, unsigned long long *size)
{
    while (n && (*s == ' ' || (*s >= '\t' && *s <= '\r'))) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r')))
        n--;
    if (n && *s == '+') {
        s++;
        n--;
    }
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        n -= 2;
        if (n && *s == '_') {
            s++;
            n--;
        }
    }
    if (!n)
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '_' && i > 0 && i + 1 < n && s[i - 1] != '_')
            continue;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v > (ULLONG_MAX >> 4) ? ULLONG_MAX : (v << 4) | d;
    }
    *size = v;
    return 0;
}

static void dechunk(const char *data, size_t n, struct buf *body)
{
    size_t pos = 0;
    for (;;) {
        const char *line_end = pos <= n ? memmem(data + pos, n - pos, "\r\n", 2) : NULL;
        unsigned long long size;
        const char *text = data + pos;
        size_t text_len = 0;
        if (line_end) {
            text_len = line_end - text;
            const char *semi = memchr(text, ';', text_len);
            if (semi)
                text_len = semi - text;
        }
        if (chunk_size(text, text_len, &size) < 0)
            fail_socket("bad chunk size in answer");
        if (size == 0)
            return;
        size_t start = line_end - data + 2;
        if (size > n || start + size > n)
            fail_socket("answer ended inside a chunk");
        add(body, data + start, size);
        pos = start + size + 2;
    }
}

/* (status, body) of the answer, or the BadAnswer words Python would print. */
static int parse_answer(const struct buf *raw, struct buf *body)
{
    if (raw->len == 0)
        fail_socket("Remote end closed connection without response");
    const char *sep = memmem(raw->data, raw->len, "\r\n\r\n", 4);
    if (!sep)
        fail_socket("answer ended inside its headers");
    size_t head_len = sep - raw->data, rest_len = raw->len - head_len - 4;
    const char *rest = sep + 4;
    const char *eol = memmem(raw->data, head_len, "\r\n", 2);
    size_t line_len = eol ? (size_t)(eol - raw->data) : head_len;
    const char *space = memchr(raw->data, ' ', line_len);
    const char *code = space ? space + 1 : raw->data + line_len;
    size_t code_len = raw->data + line_len - code;
    if (code_len > 3)
        code_len = 3;
    int ok = line_len >= 5 && !memcmp(raw->data, "HTTP/", 5) && space && code_len == 3;
    for (size_t i = 0; ok && i < 3; i++)
        ok = code[i] >= '0' && code[i] <= '9';
    if (!ok) {
        struct buf m = {0};
        adds(&m, "bad status line: ");
        add_latin1_repr(&m, (const unsigned char *)raw->data, line_len < 80 ? line_len : 80);
        fail_socket(m.data);
    }
    int status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    const char *v;
    size_t v_len;
    if (header(raw->data, head_len, "transfer-encoding", &v, &v_len)) {
        int chunked = 0;
        for (size_t i = 0; i + 7 <= v_len; i++)
            chunked |= !strncasecmp(v + i, "chunked", 7);
        if (chunked) {
            dechunk(rest, rest_len, body);
            return status;
        }
    }
    if (!header(raw->data, head_len, "content-length", &v, &v_len)) {
        add(body, rest, rest_len);
        return status;
    }
    unsigned long long length = 0;
    int digits = v_len > 0;
    for (size_t i = 0; i < v_len; i++) {
        digits &= v[i] >= '0' && v[i] <= '9';
        if (digits)
            length = length > ULLONG_MAX / 10 ? ULLONG_MAX : length * 10 + (v[i] - '0');
    }
    if (!digits || rest_len < length)
        fail_bad_answer("answer shorter than its Content-Length ", v, v_len);
    add(body, rest, length);
    return status;
}

/* ---- the error text: pilot/client.py _error_text ------------------------------------ */

/* A JSON reader as strict as Python's json.loads: 0 and the end on success. `value`
 * gets str() of the top-level object's last "error" member (a Python str as UTF-8 with
 * surrogates), when there is one. */
struct json {
    const unsigned char *s;
    size_t n, i;
    int depth;
};

static void json_space(struct json *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n'
                           || j->s[j->i] == '\r'))
        j->i++;
}

static int hex4(const unsigned char *p, long *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        int c = p[k], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static int json_string(struct json *j, struct buf *out)
{
    j->i++;  /* the opening quote */
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return 0;
        }
        if (c < 0x20)
            return -1;  /* strict: no raw control characters */
        if (c != '\\') {
            size_t len;
            if (utf8_next(j->s + j->i, j->n - j->i, &len, 1) < 0)
                return -1;
            if (out)
                add(out, j->s + j->i, len);
            j->i += len;
            continue;
        }
        if (j->i + 1 >= j->n)
            return -1;
        c = j->s[j->i + 1];
        const char *simple = strchr("\"\\/bfnrt", c);
        if (c && simple) {
            static const char to[] = "\"\\/\b\f\n\r\t";
            if (out)
                add(out, &to[simple - "\"\\/bfnrt"], 1);
            j->i += 2;
            continue;
        }
        long cp, low;
        if (c != 'u' || j->i + 6 > j->n || hex4(j->s + j->i + 2, &cp) < 0)
            return -1;
        j->i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && j->i + 6 <= j->n && j->s[j->i] == '\\'
            && j->s[j->i + 1] == 'u' && hex4(j->s + j->i + 2, &low) == 0 && low >= 0xDC00
            && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            j->i += 6;
        }
        if (out)
            add_utf8(out, cp);
    }
    return -1;
}

/* str() of a JSON number as Python has it: an int as its digits, a float as repr(). */
static int json_number(struct json *j, struct buf *out)
{
    size_t start = j->i;
    if (j->i < j->n && j->s[j->i] == '-')
        j->i++;
    if (j->i < j->n && j->s[j->i] == '0')
        j->i++;
    else if (j->i < j->n && j->s[j->i] >= '1' && j->s[j->i] <= '9')
        while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
            j->i++;
    else
        return -1;
    size_t int_end = j->i;
    int is_float = 0;
    if (j->i + 1 < j->n && j->s[j->i] == '.' && j->s[j->i + 1] >= '0' && j->s[j->i + 1] <= '9') {
        is_float = 1;
        j->i++;
        while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9')
            j->i++;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        size_t k = j->i + 1;
        if (k < j->n && (j->s[k] == '+' || j->s[k] == '-'))
            k++;
        if (k < j->n && j->s[k] >= '0' && j->s[k] <= '9') {
            is_float = 1;
            while (k < j->n && j->s[k] >= '0' && j->s[k] <= '9')
                k++;
            j->i = k;
        }
    }
    if (!is_float) {
        const unsigned char *d = j->s + start;
        size_t len = int_end - start;
        int negative = d[0] == '-';
        if (len - negative > MAX_INT_DIGITS)
            return -1;  /* int() refuses it: json.loads raises ValueError */
        if (out) {
            if (negative && !(len == 2 && d[1] == '0'))
                add(out, "-", 1);
            add(out, d + negative, len - negative);
        }
        return 0;
    }
    if (!out)
        return 0;
    char text[512];
    size_t len = j->i - start;
    if (len >= sizeof text)
        return -1;
    memcpy(text, j->s + start, len);
    text[len] = 0;
    double x = strtod(text, NULL);
    if (isinf(x)) {
        adds(out, x < 0 ? "-inf" : "inf");
        return 0;
    }
    /* repr(float): the shortest digits that read back, fixed unless the point is more
     * than 16 places right or 4 places left of them. */
    char shortest[64];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(shortest, sizeof shortest, "%.*e", precision - 1, x);
        if (strtod(shortest, NULL) == x)
            break;
    }
    char digits[32];
    size_t nd = 0;
    const char *p = shortest + (shortest[0] == '-');
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exponent = atoi(p + 1), point = exponent + 1;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (signbit(x))
        add(out, "-", 1);
    if (point > 16 || point < -3) {
        add(out, digits, 1);
        if (nd > 1) {
            add(out, ".", 1);
            add(out, digits + 1, nd - 1);
        }
        addf(out, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
    } else if (point <= 0) {
        adds(out, "0.");
        for (int k = 0; k < -point; k++)
            add(out, "0", 1);
        add(out, digits, nd);
    } else if ((size_t)point >= nd) {
        add(out, digits, nd);
        for (size_t k = nd; k < (size_t)point; k++)
            add(out, "0", 1);
        adds(out, ".0");
    } else {
        add(out, digits, point);
        add(out, ".", 1);
        add(out, digits + point, nd - point);
    }
    return 0;
}

static int json_value(struct json *j, struct buf *out);

static int json_container(struct json *j, struct buf *error, int *found)
{
    unsigned char open = j->s[j->i], close = open == '{' ? '}' : ']';
    if (++j->depth > 900)
        return -1;  /* Python would not get here either (RecursionError) */
    j->i++;
    json_space(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        j->depth--;
        return 0;
    }
    for (;;) {
        json_space(j);
        int is_error = 0;
        if (open == '{') {
            struct buf key = {0};
            if (j->i >= j->n || j->s[j->i] != '"' || json_string(j, &key) < 0) {
                free(key.data);
                return -1;
            }
            is_error = key.len == 5 && !memcmp(key.data, "error", 5) && j->depth == 1 && error;
            free(key.data);
            json_space(j);
            if (j->i >= j->n || j->s[j->i] != ':')
                return -1;
            j->i++;
            json_space(j);
        }
        if (is_error) {
            error->len = 0;
            if (error->data)
                error->data[0] = 0;
            *found = 1;
        }
        if (json_value(j, is_error ? error : NULL) < 0)
            return -1;
        json_space(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return 0;
        }
        return -1;
    }
}

/* One value; with `out`, str() of it (containers: their JSON text; no Pilot sends one). */
static int json_value(struct json *j, struct buf *out)
{
    if (j->i >= j->n)
        return -1;
    unsigned char c = j->s[j->i];
    static const struct { const char *json, *python; } words[] = {
        {"true", "True"}, {"false", "False"}, {"null", "None"}, {"NaN", "nan"},
        {"Infinity", "inf"}, {"-Infinity", "-inf"}};
    for (size_t k = 0; k < sizeof words / sizeof *words; k++) {
        size_t len = strlen(words[k].json);
        if (j->n - j->i >= len && !memcmp(j->s + j->i, words[k].json, len)) {
            j->i += len;
            if (out)
                adds(out, words[k].python);
            return 0;
        }
    }
    if (c == '"')
        return json_string(j, out);
    if (c == '{' || c == '[') {
        size_t start = j->i;
        int found = 0;
        if (json_container(j, NULL, &found) < 0)
            return -1;
        if (out)
            add(out, j->s + start, j->i - start);
        return 0;
    }
    return json_number(j, out);
}

/* _error_text(body): the JSON object's "error" (its str()), else the body as text,
 * stripped, else "no detail". */
static void error_text(const struct buf *body, struct buf *out)
{
    struct json j = {(const unsigned char *)body->data, body->len, 0, 0};
    if (j.n >= 3 && !memcmp(j.s, "\xEF\xBB\xBF", 3))
        j.i = 3;  /* json.loads reads bytes with a BOM as utf-8-sig */
    int utf16_or_32 = (j.n >= 4 && (!j.s[0] || !j.s[1])) || (j.n == 2 && (!j.s[0] || !j.s[1]))
                      || (j.n >= 2 && ((j.s[0] == 0xFF && j.s[1] == 0xFE)
                                       || (j.s[0] == 0xFE && j.s[1] == 0xFF)));
    json_space(&j);
    int found = 0;
    if (!utf16_or_32 && j.i < j.n && j.s[j.i] == '{' && json_container(&j, out, &found) == 0) {
        json_space(&j);
        if (j.i == j.n && found)
            return;
    }
    out->len = 0;
    decode_replace_strip(out, body->data, body->len);
    if (out->len == 0)
        adds(out, "no detail");
}

/* ---- the call ---------------------------------------------------------------------- */

static void finish(enum action action, int status, const struct buf *body)
{
    if (status >= 400 && !(action == HEALTH && status == 503)) {
        struct buf text = {0}, m = {0};
        error_text(body, &text);
        addf(&m, "control server answered %d: ", status);
        add(&m, text.data, text.len);
        fail_with(m.data, m.len);
    }
    if (action == PING)
        write_all(1, "ok\n", 3);
    else if (action == STATUS)
        write_all(1, body->data, body->len);
    else if (action == HEALTH) {
        if (status != 200 && status != 503)
            fail_with("control server sent a health answer that is not JSON",
                      strlen("control server sent a health answer that is not JSON"));
        write_all(1, body->data, body->len);
        _exit(status == 200 ? 0 : 1);
    }
    _exit(0);
}

void fast_call(int dirfd, char **argv)
{
    struct call call = {0};
    struct record record = {0};
    struct buf request = {0};
    if (parse_call(argv, &call) < 0 || (call.action = choose(&call)) == NONE)
        return;
    const char *config = call.config && call.config[0] ? call.config
                         : env_get("CONTAINERPILOT", strlen("CONTAINERPILOT"));
    if (!config || !config[0] || !utf8_locale() || !arguments_are_text(&call)
        || read_record(dirfd, &record) < 0 || !same_config(&record, config)
        || !same_environment(&record) || build_request(&call, &request) < 0)
        return;
    current = &call;
    recorded = &record;
    int fd = open_socket(&record);
    if (fd < 0)
        return;
    /* From here on the request is sent: every outcome is reported here, never by Python. */
    struct buf answer = {0}, body = {0};
    exchange(fd, &request, &answer);
    close(fd);
    int status = parse_answer(&answer, &body);
    finish(call.action, status, &body);
}
