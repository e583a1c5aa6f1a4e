/* tcelab guest agent: shared declarations. */
#ifndef TCELAB_AGENT_H
#define TCELAB_AGENT_H
#include "json.h"
#include <sys/types.h>

/* A command's outcome: on success `val` holds one JSON value; on failure
 * `cls` is an errno name (EBUSY, ENOENT…) or a QMP-like class and `desc` says why. */
struct reply {
	struct sbuf val;
	const char *cls;
	char desc[512];
};

int fail(struct reply *r, const char *cls, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail_errno(struct reply *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *errno_name(int err);
int bad_arg(struct reply *r, const char *name, int rc, const char *want);

/* sys.c: /proc and /sys */
ssize_t read_text(const char *path, char *buf, size_t max);
int write_text(const char *path, const char *text);
long long proc_status_kb(pid_t pid, const char *field);
long long kv_value(const char *path, const char *key);
int cmd_info(const struct jval *args, struct reply *r);
int cmd_counters(const struct jval *args, struct reply *r);
int cmd_bind(const struct jval *args, struct reply *r);
int cmd_unbind(const struct jval *args, struct reply *r);
int cmd_read_file(const struct jval *args, struct reply *r);
int cmd_list_dir(const struct jval *args, struct reply *r);
int cmd_write_file(const struct jval *args, struct reply *r);
/* The "argv" argument (1 to max strings), or NULL with the reply filled. */
const struct jval *argv_arg(const struct jval *args, int max, struct reply *r);
/* Forks argv (PATH searched) with stdin /dev/null and stdout/stderr on pipes whose
 * non-blocking read ends go to fds; detach: own session, killed when the agent dies.
 * The pid, or -1 with the reply filled. */
pid_t start_program(const struct jval *argv, const char *cwd, int detach, int fds[2], struct reply *r);
struct pollfd;
int exec_start(const struct jval *args, struct reply *r, const struct sbuf *id);
int exec_poll_fds(struct pollfd *p, int max);
void exec_service(void (*send)(struct sbuf *id, struct reply *r, int ok));
int cmd_pin_holders(const struct jval *args, struct reply *r);
int cmd_kill(const struct jval *args, struct reply *r);
int cmd_hugepages(const struct jval *args, struct reply *r);

/* stream.c: spawned programs and unix-socket relays */
int cmd_spawn(const struct jval *args, struct reply *r);
int cmd_relay_open(const struct jval *args, struct reply *r);
int cmd_stream_write(const struct jval *args, struct reply *r);
int cmd_stream_close(const struct jval *args, struct reply *r);
int stream_read_start(const struct jval *args, struct reply *r, const struct sbuf *id);
int stream_poll_fds(struct pollfd *p, int max, int *busy);
void stream_service(void (*send)(struct sbuf *id, struct reply *r, int ok));

/* seeded.c: user programs that seed faults (`tcelab-agent hand-off`, `tcelab-agent lock`) */
int hand_off_main(int argc, char **argv);
int lock_main(int argc, char **argv);

/* worker.c: the VFIO worker process */
void worker_main(int fd);
#endif
