/*
 * launcher.c: the first part of dist/pilot, a static executable that carries Pilot.
 *
 * Why this exists (instead of PyInstaller onefile + staticx):
 *  - In a FROM-scratch image there is no libc, so the bundled program must carry its
 *    own glibc and loader. staticx does that, but its bootloader forwards only SIGTERM
 *    and SIGINT; as PID 1, SIGHUP/SIGUSR1/SIGUSR2 never reached Pilot. This launcher
 *    forwards every signal a process can catch.
 *  - It unpacks once (PyInstaller onedir + glibc), not twice (staticx then onefile).
 *  - A job that runs `/pilot -putmetric ...` finds PILOT_BUNDLE (set here for the
 *    running Pilot and its children) and executes the already-unpacked program
 *    directly: nothing is unpacked or written per call. Processes that did not
 *    inherit it (docker exec, HEALTHCHECK) find it through $TMPDIR/.pilot-<build id>.
 *    TMPDIR may be shared with other users (a host /tmp mounted into containers), so
 *    a copy is reused only through directories nobody else can change, it is
 *    executed from the descriptor that was checked, and it is locked against its
 *    removal for as long as the call runs (see open_trusted and reuse).
 *
 * File layout: [this static ELF][frames][64-byte trailer]
 *   trailer: "PILOTBUNDLE3" (12) | u32 frame count | u64 payload offset |
 *            u64 payload size | u64 unpacked size | 24-char build id
 *   frame:   u64 packed size | u64 entry count | zstd frame of entries; frames are
 *            unpacked in parallel, each lists every directory before its files
 *   entry:   u8 type ('d', 'f', 'l') | u32 mode | u32 path length | u64 data length |
 *            path | data (file contents, or the symlink target)
 *
 * As PID 1 it reaps every child it is given, forwards signals to Pilot, removes the
 * unpacked directory once Pilot has exited (also after SIGTERM), and exits with Pilot's
 * status (128+N when Pilot was killed by signal N).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "fastcall.h"

#define MAGIC "PILOTBUNDLE3"
#define MAX_FRAMES 16
#define TRAILER_SIZE 64
#define ID_SIZE 24
#define BUNDLE_ENV "PILOT_BUNDLE"
#define ID_FILE ".pilot-bundle-id"
#define APP "bin/pilot"  /* python3.11, named for ps */
#define LOADER "lib/ld-linux-x86-64.so.2"
#define UNLOCK_WAIT_MS 5000  /* how long an exiting Pilot waits for calls still
                                 running from its copy before removing it */

struct trailer {
    char magic[12];
    uint32_t count;  /* frames */
    uint64_t offset;
    uint64_t size;
    uint64_t unpacked;
    char id[ID_SIZE];
} __attribute__((packed));

static void die(const char *what, const char *detail)
{
    dprintf(2, "pilot: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path) < 0 ? 0 : 0;  /* keep going: remove as much as possible */
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int read_trailer(int fd, struct trailer *t)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < TRAILER_SIZE)
        return -1;
    if (pread(fd, t, sizeof *t, st.st_size - TRAILER_SIZE) != (ssize_t)sizeof *t)
        return -1;
    return memcmp(t->magic, MAGIC, sizeof t->magic) == 0 ? 0 : -1;
}

/* A directory a path may pass through: owned by us or root, and writable by nobody
 * else, unless it is sticky (a shared /tmp): there, others cannot rename or remove
 * what we own, and the next component is checked in turn. */
static int trusted_dir(const struct stat *st, uid_t owner)
{
    return S_ISDIR(st->st_mode) && (st->st_uid == owner || st->st_uid == 0)
           && (!(st->st_mode & 022) || (st->st_mode & S_ISVTX));
}

/* Open the directory at `path` one component at a time, never following a symbolic
 * link, each component trusted_dir() for `owner`. The path is absolute, without
 * "..". Returns an O_PATH descriptor, or -1. Checking the path with stat() and then
 * using it by name let another user swap a link in between (time of check is not
 * time of use); here every step uses the descriptor the previous step checked. */
static int open_trusted(const char *path, uid_t owner)
{
    char copy[PATH_MAX], *save = NULL;
    struct stat st;
    if (path[0] != '/' || strlen(path) >= sizeof copy)
        return -1;
    strcpy(copy, path);
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !trusted_dir(&st, owner)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (char *name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
        if (strcmp(name, ".") == 0)
            continue;
        int next = strcmp(name, "..") == 0 ? -1
                   : openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (next < 0)
            return -1;
        fd = next;
        if (fstat(fd, &st) < 0 || !trusted_dir(&st, owner)) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* True when the directory open at `fd` holds this very build. */
static int holds_build(int fd, const struct trailer *t)
{
    char id[ID_SIZE];
    int idfd = openat(fd, ID_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (idfd < 0)
        return 0;
    ssize_t n = read(idfd, id, sizeof id);
    close(idfd);
    return n == ID_SIZE && memcmp(id, t->id, ID_SIZE) == 0;
}

/* A readable descriptor of the unpacked copy at `dir` when it is this build's, ours
 * (not writable by others) and reached only through trusted directories; else -1. */
static int open_bundle(const char *dir, const struct trailer *t)
{
    struct stat st;
    int path_fd = open_trusted(dir, geteuid()), fd = -1;
    if (path_fd >= 0) {
        fd = openat(path_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(path_fd);
    }
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)
                    || !holds_build(fd, t))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Run `DIR/bin/pilot -I -c RUN_MAIN ARGS...`: the interpreter's path must be argv[0]
 * (Python finds bin/pilot._pth from it), and -I keeps the user's PYTHON* variables
 * (meant for their own programs) away from Pilot. RUN_MAIN runs pilot.py, compiled as
 * __main__.pyc into lib/pilot.zip, the first entry of sys.path: running the zip itself
 * would import runpy and importlib.util first (~4 ms of every client call). The program
 * is executed from a descriptor opened under `dirfd` (the directory that was checked),
 * not by its name. */
#define RUN_MAIN "import sys, zipimport; " \
    "exec(zipimport.zipimporter(sys.path[0]).get_code('__main__'))"

static void exec_app(int dirfd, const char *dir, char **argv)
{
    char app[PATH_MAX];
    struct stat st;
    int argc = 0;
    while (argv[argc])
        argc++;
    char **args = calloc(argc + 4, sizeof *args);
    int fd = openat(dirfd, APP, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (!args || fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)
        || st.st_uid != geteuid() || (st.st_mode & 022)) {
        free(args);
        if (fd >= 0)
            close(fd);
        return;
    }
    snprintf(app, sizeof app, "%s/%s", dir, APP);
    args[0] = app;
    args[1] = "-I";
    args[2] = "-c";
    args[3] = RUN_MAIN;
    for (int i = 1; i < argc; i++)
        args[i + 3] = argv[i];
    syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
    close(fd);
    free(args);
}

/* Run a copy someone else unpacked (the running Pilot's) if open_bundle() accepts it;
 * return (the caller unpacks its own) otherwise. The interpreter, its loader (the ELF
 * interpreter path written in by set_interpreter) and Python's imports still find
 * their files by name under `dir`: names that stay ours only while the directory
 * exists, since in a shared /tmp another user may create the same name once it is
 * gone. So the call holds a shared lock on the directory for its whole life (the
 * descriptor survives exec), and a Pilot removes its copy only under an exclusive
 * lock (remove_copy); a copy already being removed is not used. */
static void reuse(const char *dir, const struct trailer *t, char **argv)
{
    int fd = open_bundle(dir, t);
    if (fd < 0)
        return;
    /* Locked, the copy is complete only if its removal had not begun: check again. */
    if (flock(fd, LOCK_SH | LOCK_NB) == 0 && holds_build(fd, t) && fcntl(fd, F_SETFD, 0) == 0) {
        fast_call(fd, argv);  /* returns when Python must answer (fastcall.c) */
        exec_app(fd, dir, argv);
    }
    close(fd);
}

static const char *tmpdir(void)
{
    const char *tmp = getenv("TMPDIR");
    return tmp && tmp[0] ? tmp : "/tmp";
}

/* $TMPDIR/.pilot-<build id>: lets processes that did not inherit PILOT_BUNDLE
 * (docker exec, a HEALTHCHECK) reuse the running Pilot's unpacked files too. TMPDIR
 * may be shared with other users: the link is used only when it is ours, in a TMPDIR
 * reached through trusted directories; `*tmpfd` is TMPDIR's descriptor. */
static int shared_link(char *name, size_t size, const struct trailer *t, int *tmpfd)
{
    if (snprintf(name, size, ".pilot-%.*s", ID_SIZE, t->id) >= (int)size)
        return -1;
    *tmpfd = open_trusted(tmpdir(), geteuid());
    return *tmpfd < 0 ? -1 : 0;
}

/* The target of the symbolic link `name` in `tmpfd`, and its owner; -1 when it is not
 * a symbolic link. Read from the link's own descriptor: what is checked is what is read. */
static int read_link(int tmpfd, const char *name, char *target, size_t size, uid_t *owner)
{
    struct stat st;
    int fd = openat(tmpfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = -1;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
        *owner = st.st_uid;
        n = readlinkat(fd, "", target, size - 1);
    }
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    target[n] = 0;
    return 0;
}

static void reuse_shared(const struct trailer *t, char **argv)
{
    char name[64], dir[PATH_MAX];
    uid_t owner;
    int tmpfd;
    if (shared_link(name, sizeof name, t, &tmpfd) < 0)
        return;
    int found = read_link(tmpfd, name, dir, sizeof dir, &owner);
    close(tmpfd);
    if (found == 0 && owner == geteuid())  /* never follow a link someone else owns */
        reuse(dir, t, argv);
}

/* True when a link owned by another user leads to a copy of that user's (through
 * directories trusted for that user), which serves that user's calls. */
static int others_copy(const char *target, uid_t owner)
{
    struct stat st;
    int fd = open_trusted(target, owner);
    int theirs = fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == owner;
    if (fd >= 0)
        close(fd);
    return theirs;
}

/* Offer our copy as $TMPDIR/.pilot-<id>. A link that is ours and leads to a live copy
 * of ours is kept; one leading to another user's copy is left to that user; anything
 * else (a dead link, or one another user planted to lead elsewhere) is replaced if we
 * may remove it. */
static void publish_shared(const struct trailer *t, const char *dir)
{
    char name[64], old[PATH_MAX];
    uid_t owner;
    int tmpfd;
    if (shared_link(name, sizeof name, t, &tmpfd) < 0)
        return;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (symlinkat(dir, tmpfd, name) == 0 || errno != EEXIST)
            break;
        if (read_link(tmpfd, name, old, sizeof old, &owner) == 0) {
            if (owner == geteuid()) {
                int fd = open_bundle(old, t);
                if (fd >= 0) {
                    close(fd);
                    break;  /* another live copy of ours already serves */
                }
            } else if (others_copy(old, owner)) {
                break;
            }
        }
        if (unlinkat(tmpfd, name, 0) < 0)
            break;  /* another user's, in a sticky TMPDIR: calls will not follow it */
    }
    close(tmpfd);
}

static void withdraw_shared(const struct trailer *t, const char *dir)
{
    char name[64], old[PATH_MAX];
    uid_t owner;
    int tmpfd;
    if (shared_link(name, sizeof name, t, &tmpfd) < 0)
        return;
    if (read_link(tmpfd, name, old, sizeof old, &owner) == 0 && owner == geteuid()
        && strcmp(old, dir) == 0)
        unlinkat(tmpfd, name, 0);
    close(tmpfd);
}

/* True when argv asks for a one-shot action (a client flag such as -putmetric or -ping,
 * -version, -help, -template): only those may run from another process's unpacked copy.
 * The supervisor must run under its own launcher from its own copy: a copy found
 * through $TMPDIR/.pilot-<id> belongs to another Pilot (possibly in another container
 * sharing the host's /tmp) and is removed when that Pilot exits, while this one keeps
 * importing from it. Parsed as pilot/cli.py parses (Go flag syntax, last value wins);
 * anything unclear counts as the supervisor, which only costs an unpack. */
static int is_one_shot(char **argv)
{
    static const char *actions[] = {"template", "version", "reload", "ping", "status",
                                    "health", "help", "h", "events", "follow", "graph", NULL};
    int asked[16] = {0}, one_shot = 0;
    for (int i = 1; argv[i]; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || !arg[1] || strcmp(arg, "--") == 0 || strncmp(arg, "---", 3) == 0)
            break;
        const char *name = arg + (arg[1] == '-' ? 2 : 1), *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int known = 0;
        for (int k = 0; actions[k]; k++)
            if (strlen(actions[k]) == len && strncmp(name, actions[k], len) == 0) {
                known = 1;
                asked[k] = !eq || strcmp(eq + 1, "1") == 0 || strcasecmp(eq + 1, "t") == 0
                           || strcasecmp(eq + 1, "true") == 0;
            }
        if (known) {
            /* -graph's format may follow it as the next argument */
            if (len == 5 && strncmp(name, "graph", 5) == 0 && !eq && argv[i + 1]
                && (strcmp(argv[i + 1], "dot") == 0 || strcmp(argv[i + 1], "mermaid") == 0
                    || strcmp(argv[i + 1], "text") == 0))
                i++;
            if (len == 5 && strncmp(name, "graph", 5) == 0)
                asked[10] = 1;  /* any -graph[=format] is the one-shot drawing */
            continue;
        }
        int takes_value = 0;
        static const char *valued[] = {"config", "out", "maintenance", "putenv", "putmetric",
                                       "since", "stop", "start", "restart", "signal", "render",
                                       NULL};
        for (int k = 0; valued[k]; k++)
            if (strlen(valued[k]) == len && strncmp(name, valued[k], len) == 0)
                takes_value = k + 1;
        if (!takes_value)
            return 0;  /* a usage error: let a fresh copy say so */
        const char *value = eq ? eq + 1 : argv[i + 1];
        if (!eq && argv[i + 1])
            i++;
        if (takes_value >= 3 && value && value[0])
            one_shot = 1;  /* -maintenance enable|disable, -putenv, -putmetric, -since, a job order */
    }
    for (int k = 0; actions[k]; k++)
        one_shot |= asked[k];
    return one_shot;
}

/* One zstd frame being decoded in small pieces: nothing is unpacked into a 30 MB buffer
 * first (its page faults alone cost ~10 ms), and each frame can have a thread. */
struct stream {
    ZSTD_DCtx *dctx;
    ZSTD_inBuffer in;
    unsigned char buf[256 * 1024];
    size_t pos, len;
    int damaged;  /* zstd rejected the data, as opposed to it ending early */
};

static const char *stream_error(const struct stream *z)
{
    return z->damaged ? "the bundled program is damaged" : "truncated entry";
}

/* Make at least one decoded byte available; 0 at the end of the frame or on error. */
static int stream_fill(struct stream *z)
{
    while (z->pos == z->len) {
        if (z->in.pos == z->in.size)
            return 0;
        ZSTD_outBuffer out = {z->buf, sizeof z->buf, 0};
        if (ZSTD_isError(ZSTD_decompressStream(z->dctx, &out, &z->in))) {
            z->damaged = 1;
            return 0;
        }
        z->pos = 0;
        z->len = out.pos;
    }
    return 1;
}

static int stream_read(struct stream *z, void *dst, size_t n)
{
    unsigned char *d = dst;
    while (n > 0) {
        if (!stream_fill(z))
            return -1;
        size_t k = z->len - z->pos < n ? z->len - z->pos : n;
        memcpy(d, z->buf + z->pos, k);
        z->pos += k;
        d += k;
        n -= k;
    }
    return 0;
}

static int write_all(int fd, const unsigned char *p, uint64_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= w;
    }
    return 0;
}

/* Copy n decoded bytes into fd; with fd < 0, skip them. */
static const char *stream_copy(struct stream *z, int fd, uint64_t n)
{
    while (n > 0) {
        if (!stream_fill(z))
            return stream_error(z);
        size_t k = z->len - z->pos < n ? z->len - z->pos : n;
        if (fd >= 0 && write_all(fd, z->buf + z->pos, k) < 0)
            return strerror(errno ? errno : EIO);
        z->pos += k;
        n -= k;
    }
    return NULL;
}

static int safe_relative(const char *path)
{
    return path[0] && path[0] != '/' && strstr(path, "..") == NULL;
}

static const char *unpack_entry(struct stream *z, int dirfd)
{
    unsigned char head[17];
    uint32_t mode, path_len;
    uint64_t data_len;
    char path[PATH_MAX];
    if (stream_read(z, head, sizeof head) < 0)
        return stream_error(z);
    memcpy(&mode, head + 1, 4);
    memcpy(&path_len, head + 5, 4);
    memcpy(&data_len, head + 9, 8);
    if (path_len >= PATH_MAX)
        return "damaged bundle (path length)";
    if (stream_read(z, path, path_len) < 0)
        return stream_error(z);
    path[path_len] = 0;
    if (!safe_relative(path))
        return "unsafe path in bundle";
    if (head[0] == 'd') {
        /* Every frame lists every directory, so that frames unpack independently. */
        if (mkdirat(dirfd, path, mode & 0700) < 0 && errno != EEXIST)
            return strerror(errno);
        return stream_copy(z, -1, data_len);
    }
    if (head[0] == 'l') {
        char target[PATH_MAX];
        if (data_len >= PATH_MAX)
            return "damaged bundle (symlink target)";
        if (stream_read(z, target, data_len) < 0)
            return stream_error(z);
        target[data_len] = 0;
        return symlinkat(target, dirfd, path) < 0 ? strerror(errno) : NULL;
    }
    if (head[0] != 'f')
        return "unknown entry type";
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0700);
    if (fd < 0)
        return strerror(errno);
    const char *err = stream_copy(z, fd, data_len);
    if (close(fd) < 0 && !err)
        err = strerror(errno);
    return err;
}

/* A frame of the payload: [u64 packed size][u64 entry count][zstd frame]. */
struct frame {
    const unsigned char *data;
    uint64_t size, count;
    int dirfd;
    const char *err;
};

static void *unpack_frame(void *arg)
{
    struct frame *f = arg;
    struct stream *z = malloc(sizeof *z);
    if (!z || !(z->dctx = ZSTD_createDCtx())) {
        f->err = "out of memory while unpacking";
        free(z);
        return NULL;
    }
    z->in = (ZSTD_inBuffer){f->data, f->size, 0};
    z->pos = z->len = 0;
    z->damaged = 0;
    for (uint64_t i = 0; i < f->count && !f->err; i++)
        f->err = unpack_entry(z, f->dirfd);
    ZSTD_freeDCtx(z->dctx);
    free(z);
    return NULL;
}

/* Split the payload into its frames and unpack them side by side, one thread each
 * (two frames: ~40 ms instead of ~75 ms for 32 MB on two cores). */
static const char *unpack_frames(const unsigned char *p, const struct trailer *t, int dirfd)
{
    struct frame frames[MAX_FRAMES];
    pthread_t threads[MAX_FRAMES];
    const unsigned char *end = p + t->size;
    if (t->count == 0 || t->count > MAX_FRAMES)
        return "damaged bundle (frame count)";
    for (uint32_t i = 0; i < t->count; i++) {
        if (end - p < 16)
            return "damaged bundle (frame header)";
        memcpy(&frames[i].size, p, 8);
        memcpy(&frames[i].count, p + 8, 8);
        p += 16;
        if ((uint64_t)(end - p) < frames[i].size)
            return "damaged bundle (frame size)";
        frames[i].data = p;
        frames[i].dirfd = dirfd;
        frames[i].err = NULL;
        p += frames[i].size;
    }
    uint32_t started = 1;  /* frame 0 runs on this thread */
    for (; started < t->count; started++)
        if (pthread_create(&threads[started], NULL, unpack_frame, &frames[started]) != 0)
            break;
    for (uint32_t i = started; i < t->count; i++)
        unpack_frame(&frames[i]);  /* no thread for it: unpack it here */
    unpack_frame(&frames[0]);
    for (uint32_t i = 1; i < started; i++)
        pthread_join(threads[i], NULL);
    for (uint32_t i = 0; i < t->count; i++)
        if (frames[i].err)
            return frames[i].err;
    return NULL;
}

/* The bootloader was built with a placeholder ELF interpreter; point it at our ld.so. */
static const char *set_interpreter(const char *dir)
{
    char app[PATH_MAX], loader[PATH_MAX];
    Elf64_Ehdr eh;
    snprintf(app, sizeof app, "%s/%s", dir, APP);
    if (snprintf(loader, sizeof loader, "%s/%s", dir, LOADER) >= (int)sizeof loader)
        return "path too long";
    int fd = open(app, O_RDWR | O_CLOEXEC);
    if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh)
        return "cannot read the unpacked program";
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, eh.e_phoff + (off_t)i * eh.e_phentsize) != (ssize_t)sizeof ph)
            break;
        if (ph.p_type != PT_INTERP)
            continue;
        size_t n = strlen(loader) + 1;
        if (n > ph.p_filesz) {
            close(fd);
            return "the TMPDIR path is too long for the bundled program";
        }
        char *buf = calloc(1, ph.p_filesz);
        memcpy(buf, loader, n);
        ssize_t w = pwrite(fd, buf, ph.p_filesz, ph.p_offset);
        free(buf);
        close(fd);
        return w == (ssize_t)ph.p_filesz ? NULL : "cannot patch the unpacked program";
    }
    close(fd);
    return "the unpacked program has no interpreter";
}

/* Every failure to find room names TMPDIR and what it needs (a writable directory on
 * a filesystem that allows execution): `docker run --read-only` leaves no writable
 * /tmp, and `--tmpfs /tmp` mounts it noexec unless told `--tmpfs /tmp:exec`. Without
 * the noexec check the program unpacks fine and then cannot be started ("Permission
 * denied", status 127), which does not say where to look. */
static void no_room(const char *tmp, const char *why)
{
    dprintf(2, "pilot: cannot unpack into TMPDIR (%s): %s; set TMPDIR to a writable "
            "directory with room, on a filesystem that allows execution "
            "(e.g. docker run --tmpfs /tmp:exec)\n", tmp, why);
    exit(1);
}

static void make_bundle_dir(char *dir, size_t size, const struct trailer *t)
{
    struct statvfs fs;
    const char *tmp = tmpdir();
    if (snprintf(dir, size, "%s%spilot-XXXXXX", tmp, tmp[strlen(tmp) - 1] == '/' ? "" : "/")
        >= (int)size)
        no_room(tmp, "the path is too long");
    if (!mkdtemp(dir))
        no_room(tmp, strerror(errno));
    /* Offered to others by name (PILOT_BUNDLE, the shared link), which open_trusted()
     * walks without following links: name it without any. */
    char canonical[PATH_MAX];
    if (realpath(dir, canonical) && strlen(canonical) < size)
        strcpy(dir, canonical);
    if (statvfs(dir, &fs) < 0)
        return;
    if (fs.f_flag & ST_NOEXEC) {
        rmdir(dir);
        no_room(tmp, "it is mounted noexec");
    }
    /* A small tmpfs (--tmpfs /tmp:size=16m) would fail half-way with ENOSPC. */
    uint64_t free_mb = (uint64_t)fs.f_bavail * fs.f_frsize >> 20, need_mb = (t->unpacked >> 20) + 1;
    if (free_mb < need_mb) {
        char why[128];
        snprintf(why, sizeof why, "%llu MB free, Pilot needs %llu MB",
                 (unsigned long long)free_mb, (unsigned long long)need_mb);
        rmdir(dir);
        no_room(tmp, why);
    }
}

static void unpack(int fd, const struct trailer *t, const char *dir)
{
    /* Map the file rather than read it: its pages are already in the page cache. */
    long page = sysconf(_SC_PAGESIZE);
    off_t base = t->offset & ~(uint64_t)(page - 1);
    size_t skip = t->offset - base, length = skip + t->size;
    unsigned char *map = mmap(NULL, length, PROT_READ, MAP_PRIVATE, fd, base);
    if (map == MAP_FAILED)
        die("cannot read the bundled program", strerror(errno));
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *err = dirfd < 0 ? strerror(errno) : unpack_frames(map + skip, t, dirfd);
    munmap(map, length);
    if (!err)
        err = set_interpreter(dir);
    if (!err) {
        int idfd = openat(dirfd, ID_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
        if (idfd < 0 || write_all(idfd, (const unsigned char *)t->id, ID_SIZE) < 0)
            err = strerror(errno);
        if (idfd >= 0)
            close(idfd);
    }
    if (dirfd >= 0)
        close(dirfd);
    if (err) {
        remove_tree(dir);
        no_room(tmpdir(), err);
    }
}

/* After unpacking, most of this program's code (zstd, the unpacker) is never run again,
 * yet its pages stay in this process's RSS for the container's whole life. Dropping
 * the executable mappings of our own file from the page tables costs nothing: what
 * supervising still uses faults back in from the page cache (with the kernel's 64 kB
 * fault-around, 384 of 756 kB come back; RSS 1.1 -> 0.8 MB). Only r-x mappings: they
 * are never written, so nothing private is lost (unlike RELRO pages). */
static void release_unpacker_code(void)
{
    char self[PATH_MAX], line[PATH_MAX + 128];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    FILE *maps = fopen("/proc/self/maps", "re");
    if (n <= 0 || !maps) {
        if (maps)
            fclose(maps);
        return;
    }
    self[n] = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char perms[5], path[PATH_MAX];
        path[0] = 0;
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %4095s", &start, &end, perms, path) < 3)
            continue;
        if (strcmp(perms, "r-xp") == 0 && strcmp(path, self) == 0)
            madvise((void *)start, end - start, MADV_DONTNEED);
    }
    fclose(maps);
}

static void signals_we_wait_for(sigset_t *set)
{
    sigfillset(set);
    /* Faults are about this process itself and must not be blocked. */
    sigdelset(set, SIGSEGV);
    sigdelset(set, SIGBUS);
    sigdelset(set, SIGFPE);
    sigdelset(set, SIGILL);
    sigdelset(set, SIGABRT);
    sigdelset(set, SIGTRAP);
    sigdelset(set, SIGSYS);
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/* Reap everything that has exited; return 1 once `app` is among them. */
static int reap(pid_t app, int *status)
{
    int done = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == app) {
            *status = st;
            done = 1;
        }
    }
    return done;
}

/* Remove our unpacked copy once no call runs from it any more (see reuse): such calls
 * hold a shared lock, and end quickly once Pilot is gone (its socket is). Rather than
 * pull the files from under a call that is still running after UNLOCK_WAIT_MS, and
 * free the name for anyone to take, the copy is left in place. */
static void remove_copy(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int waited = 0; fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
         waited += 10) {
        if (waited >= UNLOCK_WAIT_MS) {
            dprintf(2, "pilot: left %s in place: a client call still runs from it\n", dir);
            close(fd);
            return;
        }
        usleep(10000);
    }
    remove_tree(dir);
    if (fd >= 0)
        close(fd);
}

static int supervise(const char *dir, char **argv, const sigset_t *waited, const sigset_t *old,
                     const struct trailer *t)
{
    pid_t app = fork();
    if (app < 0) {
        remove_tree(dir);
        die("cannot start Pilot", strerror(errno));
    }
    if (app == 0) {
        sigprocmask(SIG_SETMASK, old, NULL);
        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd >= 0)
            exec_app(dirfd, dir, argv);
        dprintf(2, "pilot: cannot start the unpacked program: %s\n", strerror(errno));
        _exit(127);
    }
    /* No tick: sigwaitinfo sleeps until a signal comes, so an idle container never wakes
     * this process. Every child's exit raises SIGCHLD (blocked, so it stays pending until
     * taken here, even one that came before the first wait), and a reap takes every child
     * that has exited, so signals that merged into one still leave no zombie. */
    int status = 0;
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(waited, &info);
        if (sig > 0 && sig != SIGCHLD)
            kill(app, sig);
        if (sig == SIGCHLD && reap(app, &status))
            break;
    }
    withdraw_shared(t, dir);
    remove_copy(dir);
    return exit_code(status);
}

static int open_self(const char *argv0)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : open(argv0, O_RDONLY | O_CLOEXEC);
}

int main(int argc, char **argv)
{
    (void)argc;
    sigset_t waited, old;
    struct trailer t;
    char dir[PATH_MAX];
    int fd = open_self(argv[0]);
    if (fd < 0 || read_trailer(fd, &t) < 0)
        die("this file does not carry a bundled program", NULL);

    const char *bundle = getenv(BUNDLE_ENV);
    int one_shot = is_one_shot(argv);
    if (one_shot) {
        if (bundle)
            reuse(bundle, &t, argv);  /* on failure, fall back to unpacking a fresh copy */
        reuse_shared(&t, argv);
    }

    /* Block signals before unpacking: one that arrives meanwhile is passed on later. */
    signals_we_wait_for(&waited);
    sigprocmask(SIG_BLOCK, &waited, &old);
    make_bundle_dir(dir, sizeof dir, &t);
    unpack(fd, &t, dir);
    close(fd);
    setenv(BUNDLE_ENV, dir, 1);
    if (!one_shot)  /* a one-shot copy is removed within moments: others must not use it */
        publish_shared(&t, dir);
    release_unpacker_code();
    return supervise(dir, argv, &waited, &old, &t);
}
