/* tcelab guest agent: shared declarations and the conventions every command follows. */
#ifndef TCELAB_AGENT_H
#define TCELAB_AGENT_H
#include "json.h"
#include <sys/types.h>

/*
 * A command's reply. On success `val` holds one JSON value (empty means {}); on failure `cls` is an errno name
 * (EBUSY, ENOENT…) or a QMP-like class (InvalidParameter, CommandNotFound, GenericError) and `desc` says why.
 * fail(), fail_errno() and bad_arg() fill a failure and return REPLY_ERROR, so a handler ends with
 * `return fail(r, ...)`.
 */
struct reply {
	struct sbuf val;
	const char *cls;
	char desc[512];
};

/*
 * What a handler returns: how and when the dispatcher replies. Every agent command and every worker operation
 * returns one of these; nothing else decides it.
 */
enum outcome {
	REPLY_ERROR = -1,     /* reply now: {"error": {"class": cls, "desc": desc}} */
	REPLY_OK = 0,         /* reply now: {"return": val} */
	REPLY_LATER,          /* no reply now: the handler kept req->id and a service loop replies when the work ends */
	REPLY_RAW,            /* reply now: val is a complete {"return"…} or {"error"…} object (a worker's); the id is added */
	REPLY_AND_POWER_OFF,  /* reply now (as REPLY_OK), then power the guest off */
	REPLY_AND_EXIT,       /* reply now (as REPLY_OK), then the process exits (a worker's "exit") */
};

/* A request as a handler sees it: its arguments (an object, {} when absent) and its id (empty when none). */
struct request {
	const struct jval *args;
	const struct sbuf *id;
};

/* An agent command: one entry of the agent's command table (agent.c). */
typedef enum outcome (*command_fn)(const struct request *req, struct reply *r);

/* reply.c: filling and writing replies (the agent's and the workers', one writer for both) */
enum outcome fail(struct reply *r, const char *cls, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
enum outcome fail_errno(struct reply *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *errno_name(int err);
/* rc as json_str()/json_u64() return it: -1 absent, -2 wrong type. */
enum outcome bad_arg(struct reply *r, const char *name, int rc, const char *want);
/* Appends the reply line (newline included) for an outcome; `id` (may be NULL or empty) is added when present. */
void reply_format(struct sbuf *out, const struct reply *r, enum outcome o, const struct sbuf *id);
/* How a service loop sends a reply it was holding (REPLY_LATER) once the work ends. */
typedef void (*reply_sender)(const struct sbuf *id, struct reply *r, enum outcome o);

/* files.c: reading and writing files (/proc, /sys), and the file commands */
ssize_t read_text(const char *path, char *buf, size_t max);
int write_text(const char *path, const char *text);
long long proc_status_kb(pid_t pid, const char *field);
long long kv_value(const char *path, const char *key);
/* Drops trailing newlines and spaces (what a /proc or /sys file ends with). */
void trim(char *s);
enum outcome cmd_read_file(const struct request *req, struct reply *r);
enum outcome cmd_list_dir(const struct request *req, struct reply *r);
enum outcome cmd_write_file(const struct request *req, struct reply *r);

/* counters.c: pin, lock and huge page counters */
/* Folds the kernel's per-CPU vmstat deltas into /proc/vmstat, so the next read of it is exact. */
void fold_vmstat(void);
enum outcome cmd_counters(const struct request *req, struct reply *r);

/* pci.c: PCI devices and IOMMU groups in sysfs, binding to vfio-pci, a device's configuration space */
enum outcome cmd_info(const struct request *req, struct reply *r);
enum outcome cmd_bind(const struct request *req, struct reply *r);
enum outcome cmd_unbind(const struct request *req, struct reply *r);
enum outcome cmd_pci_config_read(const struct request *req, struct reply *r);
enum outcome cmd_pci_config_write(const struct request *req, struct reply *r);

/* holders.c: the processes that hold pins or VFIO fds, and signalling them */
enum outcome cmd_pin_holders(const struct request *req, struct reply *r);
enum outcome cmd_kill(const struct request *req, struct reply *r);

/* exec.c: running helper programs */
/* The "argv" argument (1 to max strings), or NULL with the reply filled. */
const struct jval *argv_arg(const struct jval *args, int max, struct reply *r);
/* Forks argv (PATH searched) with stdin /dev/null and stdout/stderr on pipes whose
 * non-blocking read ends go to fds; detach: own session, killed when the agent dies.
 * The pid, or -1 with the reply filled. */
pid_t start_program(const struct jval *argv, const char *cwd, int detach, int fds[2], struct reply *r);
struct pollfd;
/* "exec": REPLY_LATER; exec_service() replies when the program ends. */
enum outcome cmd_exec(const struct request *req, struct reply *r);
int exec_poll_fds(struct pollfd *p, int max);
void exec_service(reply_sender send);

/* stream.c: spawned programs and unix-socket relays */
enum outcome cmd_spawn(const struct request *req, struct reply *r);
enum outcome cmd_relay_open(const struct request *req, struct reply *r);
enum outcome cmd_stream_write(const struct request *req, struct reply *r);
enum outcome cmd_stream_close(const struct request *req, struct reply *r);
/* "stream-read": REPLY_OK with data now, or REPLY_LATER (a long poll stream_service() answers). */
enum outcome cmd_stream_read(const struct request *req, struct reply *r);
int stream_poll_fds(struct pollfd *p, int max, int *busy);
void stream_service(reply_sender send);
/* Decodes base64 into a malloc'd buffer; its length, or -1 if the text is not base64. */
ssize_t base64_decode(const char *in, unsigned char **out);

/* hostile.c: loading a module, and raw hypercalls and RTAS calls through the tcelab_hcall test module (guest/hcall) */
enum outcome cmd_module_load(const struct request *req, struct reply *r);
enum outcome cmd_hcall(const struct request *req, struct reply *r);
enum outcome cmd_hcall_indirect(const struct request *req, struct reply *r);
enum outcome cmd_rtas(const struct request *req, struct reply *r);
enum outcome cmd_pe_info(const struct request *req, struct reply *r);

/* seeded.c: user programs that seed faults (`tcelab-agent hand-off`, `tcelab-agent lock`) */
/* fdpass.c: n (at most FDPASS_MAX) fds over a unix socket with one byte; 0 or -1. */
#define FDPASS_MAX 4
int send_fds(int sock, const int *fds, int n);
int receive_fds(int sock, int *fds, int n);
int hand_off_main(int argc, char **argv);
int lock_main(int argc, char **argv);

/* agent.c: one command of the agent's table, run in this process (CommandNotFound when there is none) */
enum outcome agent_command(const char *name, const struct jval *args, struct reply *r);

/* standalone.c: `tcelab-agent run STEPS [name=value...]`, a scenario's guest-side steps without the controller */
int standalone_main(int argc, char **argv);

/* device.c: the worker's group's device driven through VFIO (edu's DMA engine); worker.c owns the group. */
int worker_group_fd(void);
enum outcome op_device_open(const struct jval *args, struct reply *r);
enum outcome op_msi_enable(const struct jval *args, struct reply *r);
enum outcome op_dma(const struct jval *args, struct reply *r);
enum outcome op_device_close(const struct jval *args, struct reply *r);

/* worker.c: the VFIO worker process, and the fresh program of a foreign holder of its container */
void worker_main(int fd);
int foreign_main(int argc, char **argv);
#endif
